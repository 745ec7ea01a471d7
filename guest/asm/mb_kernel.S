/*
 * mb_kernel.S: the 32-bit multiboot test kernel, linked with one of the
 * headers mb_elf32.S (`mb-elf32`) or mb_aout.S (`mb-aout`).
 *
 * Entered as the Multiboot spec says (32-bit protected mode, paging off,
 * EAX = 0x2BADB002, EBX = the multiboot information), it checks and prints,
 * one `mb: ...` line each (numbers as 0x%08x), on COM1:
 *   booted (KIND), the magic; flags; mem_lower/mem_upper; the boot loader
 *   name (must be "hvtrace"); the command line; the memory map (entries, KiB
 *   of type-1 RAM); each module's size, FNV-1a 32 of its bytes and string;
 *   CR0 (PE on, PG off); then `mb: failures=N`.
 * It then writes its status to the debug-exit port 0xf4: the `exit=N` of its
 * command line (default 0) when every check passed, else 0x40 + failures
 * (0x7f: bad magic). Under QEMU's convention the process status is
 * (status << 1) | 1.
 *
 * Plain integer instructions only, and no `iret` (this host's emulator cannot
 * run a 32-bit protected-mode iret). Calling convention: argument in %eax
 * (second in %edx), result in %eax; %ebx, %esi, %edi, %ebp preserved.
 */
#include "common.h"
#include "multiboot.h"

    .text
    .code32

/* Entry: takes a stack, keeps EAX/EBX, checks, exits. Never returns. */
FUNCTION(mb_entry)
    cli
    mov     $mb_stack_top, %esp
    mov     %eax, mb_magic
    mov     %ebx, mb_info
    call    mb_serial_init
    call    mb_check
    mov     $EXIT_PORT, %edx
    out     %al, %dx
1:  hlt
    jmp     1b
END(mb_entry)

/* Puts COM1 in 8N1 with UART interrupts off. */
FUNCTION(mb_serial_init)
    xor     %eax, %eax
    mov     $COM1_IER, %edx
    out     %al, %dx
    mov     $0x03, %al
    mov     $COM1_LCR, %edx
    out     %al, %dx
    mov     $COM1_MCR, %edx
    out     %al, %dx
    ret
END(mb_serial_init)

/* mb_putc(c = %al): waits (bounded) for THR empty, then writes c. */
FUNCTION(mb_putc)
    push    %ebx
    mov     %eax, %ebx
    mov     $SERIAL_POLL_LIMIT, %ecx
    mov     $COM1_LSR, %edx
1:  in      %dx, %al
    test    $LSR_THRE, %al
    jnz     2f
    dec     %ecx
    jnz     1b
2:  mov     %ebx, %eax
    mov     $COM1_THR, %edx
    out     %al, %dx
    pop     %ebx
    ret
END(mb_putc)

/* mb_puts(s = %eax): writes the NUL-terminated string s. */
FUNCTION(mb_puts)
    push    %esi
    mov     %eax, %esi
1:  movzbl  (%esi), %eax
    test    %eax, %eax
    jz      2f
    call    mb_putc
    inc     %esi
    jmp     1b
2:  pop     %esi
    ret
END(mb_puts)

/* mb_put_quoted(s = %eax): writes "s". */
FUNCTION(mb_put_quoted)
    push    %esi
    mov     %eax, %esi
    mov     $'"', %eax
    call    mb_putc
    mov     %esi, %eax
    call    mb_puts
    mov     $'"', %eax
    call    mb_putc
    pop     %esi
    ret
END(mb_put_quoted)

/* mb_put_hex(v = %eax): writes v as 0x%08x. */
FUNCTION(mb_put_hex)
    push    %esi
    push    %edi
    mov     %eax, %esi
    mov     $'0', %eax
    call    mb_putc
    mov     $'x', %eax
    call    mb_putc
    mov     $8, %edi
1:  rol     $4, %esi
    mov     %esi, %eax
    and     $0xf, %eax
    movzbl  hex_digits(%eax), %eax
    call    mb_putc
    dec     %edi
    jnz     1b
    pop     %edi
    pop     %esi
    ret
END(mb_put_hex)

/* mb_put_field(name = %eax, v = %edx): writes " name=0x%08x" (name holds the '='). */
FUNCTION(mb_put_field)
    push    %esi
    mov     %edx, %esi
    call    mb_puts
    mov     %esi, %eax
    call    mb_put_hex
    pop     %esi
    ret
END(mb_put_field)

/* mb_fail(what = %eax): writes "mb: FAIL what" and counts a failure. */
FUNCTION(mb_fail)
    push    %esi
    mov     %eax, %esi
    mov     $msg_fail, %eax
    call    mb_puts
    mov     %esi, %eax
    call    mb_puts
    incl    mb_failures
    pop     %esi
    ret
END(mb_fail)

/* mb_fnv(start = %eax, end = %edx): FNV-1a 32 of the bytes [start, end). */
FUNCTION(mb_fnv)
    push    %esi
    mov     %eax, %esi
    mov     $0x811c9dc5, %eax
1:  cmp     %edx, %esi
    jae     2f
    movzbl  (%esi), %ecx
    xor     %ecx, %eax
    imul    $0x01000193, %eax, %eax
    inc     %esi
    jmp     1b
2:  pop     %esi
    ret
END(mb_fnv)

/* mb_check(): runs every check; returns the status to exit with. */
FUNCTION(mb_check)
    push    %ebx
    mov     $msg_booted, %eax
    call    mb_puts
    mov     $mb_kind, %eax
    call    mb_puts
    cmpl    $MB_BOOT_MAGIC, mb_magic
    je      1f
    mov     $msg_bad_magic, %eax
    call    mb_puts
    mov     mb_magic, %eax
    call    mb_put_hex
    mov     $msg_nl, %eax
    call    mb_puts
    mov     $MB_EXIT_BAD_MAGIC, %eax
    jmp     9f
1:  mov     $msg_magic_ok, %eax
    call    mb_puts
    call    mb_check_cpu
    mov     mb_info, %ebx
    mov     $msg_flags, %eax
    call    mb_puts
    mov     MBI_FLAGS(%ebx), %eax
    call    mb_put_hex
    mov     $msg_nl, %eax
    call    mb_puts
    mov     MBI_FLAGS(%ebx), %eax
    and     $MBI_NEEDED, %eax
    cmp     $MBI_NEEDED, %eax
    je      2f
    mov     $msg_fail_flags, %eax
    call    mb_fail
    jmp     8f                          /* the rest would read fields that are not there */
2:  mov     $msg_mem_lower, %eax
    call    mb_puts
    mov     MBI_MEM_LOWER(%ebx), %eax
    call    mb_put_hex
    mov     $msg_mem_upper, %eax
    mov     MBI_MEM_UPPER(%ebx), %edx
    call    mb_put_field
    mov     $msg_nl, %eax
    call    mb_puts
    call    mb_check_loader
    mov     $msg_cmdline, %eax
    call    mb_puts
    mov     MBI_CMDLINE(%ebx), %eax
    call    mb_put_quoted
    mov     $msg_nl, %eax
    call    mb_puts
    mov     MBI_CMDLINE(%ebx), %eax
    call    mb_parse_exit
    mov     %eax, mb_exit_value
    call    mb_check_mmap
    call    mb_report_modules
8:  mov     $msg_failures, %eax
    call    mb_puts
    mov     mb_failures, %eax
    call    mb_put_hex
    mov     $msg_nl, %eax
    call    mb_puts
    mov     mb_exit_value, %eax
    mov     mb_failures, %ecx
    test    %ecx, %ecx
    jz      9f
    lea     MB_EXIT_FAILED(%ecx), %eax
9:  pop     %ebx
    ret
END(mb_check)

/* mb_check_cpu(): CR0.PE must be on and CR0.PG off. */
FUNCTION(mb_check_cpu)
    mov     %cr0, %eax
    and     $0x80000001, %eax
    cmp     $1, %eax
    je      1f
    mov     $msg_fail_cr0, %eax
    call    mb_fail
1:  ret
END(mb_check_cpu)

/* mb_check_loader(): prints the boot loader name; it must be "hvtrace". */
FUNCTION(mb_check_loader)
    push    %esi
    push    %edi
    mov     mb_info, %eax
    mov     MBI_LOADER_NAME(%eax), %esi
    mov     $msg_loader, %eax
    call    mb_puts
    mov     %esi, %eax
    call    mb_put_quoted
    mov     $msg_nl, %eax
    call    mb_puts
    mov     $str_hvtrace, %edi
1:  movzbl  (%esi), %eax
    movzbl  (%edi), %ecx
    cmp     %eax, %ecx
    jne     2f
    inc     %esi
    inc     %edi
    test    %ecx, %ecx
    jnz     1b
    jmp     3f
2:  mov     $msg_fail_loader, %eax
    call    mb_fail
3:  pop     %edi
    pop     %esi
    ret
END(mb_check_loader)

/* mb_parse_exit(cmdline = %eax): N of the first "exit=N" (decimal), else 0. */
FUNCTION(mb_parse_exit)
    push    %esi
    push    %edi
    mov     %eax, %esi
1:  mov     $str_exit, %edi             /* does "exit=" start at %esi? */
    mov     %esi, %edx
2:  movzbl  (%edi), %ecx
    test    %ecx, %ecx
    jz      4f                          /* matched */
    movzbl  (%edx), %eax
    cmp     %eax, %ecx
    jne     3f
    inc     %edi
    inc     %edx
    jmp     2b
3:  cmpb    $0, (%esi)
    je      6f
    inc     %esi
    jmp     1b
4:  xor     %eax, %eax                  /* digits at %edx */
5:  movzbl  (%edx), %ecx
    sub     $'0', %ecx
    cmp     $9, %ecx
    ja      7f
    imul    $10, %eax, %eax
    add     %ecx, %eax
    inc     %edx
    jmp     5b
6:  xor     %eax, %eax
7:  pop     %edi
    pop     %esi
    ret
END(mb_parse_exit)

/* mb_check_mmap(): walks the memory map; prints entries and KiB of type-1 RAM. */
FUNCTION(mb_check_mmap)
    push    %ebx
    push    %esi
    push    %edi
    push    %ebp
    mov     mb_info, %eax
    mov     MBI_MMAP_ADDR(%eax), %esi
    mov     MBI_MMAP_LENGTH(%eax), %ebp
    add     %esi, %ebp                  /* end of the map */
    xor     %ebx, %ebx                  /* entries */
    xor     %edi, %edi                  /* KiB of RAM */
1:  cmp     %ebp, %esi
    jae     3f
    inc     %ebx
    cmpl    $1, MMAP_TYPE(%esi)
    jne     2f
    mov     MMAP_LEN_LO(%esi), %eax
    shr     $10, %eax
    mov     MMAP_LEN_HI(%esi), %ecx
    shl     $22, %ecx
    or      %ecx, %eax
    add     %eax, %edi
2:  mov     MMAP_SIZE(%esi), %eax
    lea     4(%esi, %eax), %esi
    jmp     1b
3:  mov     $msg_mmap, %eax
    mov     %ebx, %edx
    call    mb_put_field
    mov     $msg_ram_kib, %eax
    mov     %edi, %edx
    call    mb_put_field
    mov     $msg_nl, %eax
    call    mb_puts
    test    %ebx, %ebx
    jnz     4f
    mov     $msg_fail_mmap, %eax
    call    mb_fail
4:  pop     %ebp
    pop     %edi
    pop     %esi
    pop     %ebx
    ret
END(mb_check_mmap)

/* mb_report_modules(): one line per module: index, size, FNV-1a 32, string. */
FUNCTION(mb_report_modules)
    push    %ebx
    push    %esi
    push    %edi
    mov     mb_info, %eax
    mov     MBI_MODS_ADDR(%eax), %ebx
    mov     MBI_MODS_COUNT(%eax), %edi
    xor     %esi, %esi                  /* index */
1:  cmp     %edi, %esi
    jae     2f
    mov     $msg_module, %eax
    call    mb_puts
    mov     %esi, %eax
    call    mb_put_hex
    mov     MOD_END(%ebx), %edx
    sub     MOD_START(%ebx), %edx
    mov     $msg_size, %eax
    call    mb_put_field
    mov     MOD_START(%ebx), %eax
    mov     MOD_END(%ebx), %edx
    call    mb_fnv
    mov     %eax, %edx
    mov     $msg_fnv, %eax
    call    mb_put_field
    mov     $msg_string, %eax
    call    mb_puts
    mov     MOD_STRING(%ebx), %eax
    call    mb_put_quoted
    mov     $msg_nl, %eax
    call    mb_puts
    add     $MOD_SIZE, %ebx
    inc     %esi
    jmp     1b
2:  pop     %edi
    pop     %esi
    pop     %ebx
    ret
END(mb_report_modules)

    .section .rodata
hex_digits:     .ascii "0123456789abcdef"
str_hvtrace:    .asciz "hvtrace"
str_exit:       .asciz "exit="
msg_booted:     .asciz "mb: booted ("
msg_magic_ok:   .asciz "), magic ok\n"
msg_bad_magic:  .asciz "), bad magic eax="
msg_nl:         .asciz "\n"
msg_fail:       .asciz "mb: FAIL "
msg_fail_flags: .asciz "MBI flags lack mem, cmdline, mods, mmap or loader name\n"
msg_fail_cr0:   .asciz "CR0: not 32-bit protected mode with paging off\n"
msg_fail_loader:.asciz "boot loader name is not hvtrace\n"
msg_fail_mmap:  .asciz "empty memory map\n"
msg_flags:      .asciz "mb: flags="
msg_mem_lower:  .asciz "mb: mem_lower="
msg_mem_upper:  .asciz " mem_upper="
msg_loader:     .asciz "mb: loader="
msg_cmdline:    .asciz "mb: cmdline="
msg_mmap:       .asciz "mb: mmap entries="
msg_ram_kib:    .asciz " ram_kib="
msg_module:     .asciz "mb: module "
msg_size:       .asciz " size="
msg_fnv:        .asciz " fnv="
msg_string:     .asciz " string="
msg_failures:   .asciz "mb: failures="

    .data
mb_magic:       .long 0
mb_info:        .long 0
mb_failures:    .long 0
mb_exit_value:  .long 0

    .bss
    .p2align 4
mb_stack:       .skip MB_STACK_SIZE
mb_stack_top:
