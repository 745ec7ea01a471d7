/*
 * mptable.S: finds and parses the Intel MP table for the `smp` guest.
 *
 * mp_find locates the "_MP_" floating pointer (mp_override when a boot stub
 * built one, mb_cpus.S; else 0x9fc00..0x9ffff, then the BIOS area
 * 0xf0000..0xfffff, 16-byte aligned, checksum verified); mp_parse
 * walks the configuration table it points to and records the APIC ID of each
 * enabled processor entry in cpu_apic_ids.
 */
#include "common.h"

#define MP_FLOAT_SIG    0x5f504d5f      /* "_MP_" */
#define MP_CONFIG_SIG   0x504d4350      /* "PCMP" */
#define MPC_LENGTH      4               /* u16 base table length */
#define MPC_COUNT       34              /* u16 entry count */
#define MPC_HEADER      44
#define MPE_PROCESSOR   0               /* 20 bytes; others are 8 */
#define MPE_LAST_TYPE   4               /* local interrupt assignment */

    .text
    .code64

/* mp_find() -> %rax: address of a valid MP floating pointer, or 0. */
FUNCTION(mp_find)
    push    %rbp
    mov     %rsp, %rbp
    mov     mp_override(%rip), %rax
    test    %rax, %rax
    jnz     1f
    mov     $0x9fc00, %edi
    mov     $0xa0000, %esi
    call    mp_scan
    test    %rax, %rax
    jnz     1f
    mov     $0xf0000, %edi
    mov     $0x100000, %esi
    call    mp_scan
1:  pop     %rbp
    ret
END(mp_find)

/* mp_scan(start = %rdi, end = %rsi) -> %rax: first valid floating pointer in [start, end), or 0. */
FUNCTION(mp_scan)
    push    %rbp
    mov     %rsp, %rbp
    push    %rbx
    push    %r12
    mov     %rdi, %rbx
    mov     %rsi, %r12
1:  cmp     %r12, %rbx
    jae     3f
    cmpl    $MP_FLOAT_SIG, (%rbx)
    jne     2f
    movzbl  8(%rbx), %esi               /* length in 16-byte units */
    test    %esi, %esi
    jz      2f
    shl     $4, %esi
    mov     %rbx, %rdi
    call    mp_checksum
    test    %eax, %eax
    jnz     2f
    mov     %rbx, %rax
    jmp     4f
2:  add     $16, %rbx
    jmp     1b
3:  xor     %eax, %eax
4:  pop     %r12
    pop     %rbx
    pop     %rbp
    ret
END(mp_scan)

/* mp_checksum(p = %rdi, len = %rsi) -> %eax: the byte sum of p[0..len] mod 256 (0 = valid). */
FUNCTION(mp_checksum)
    push    %rbp
    mov     %rsp, %rbp
    xor     %eax, %eax
    test    %rsi, %rsi
    jz      2f
1:  movzbl  (%rdi), %ecx
    add     %ecx, %eax
    inc     %rdi
    dec     %rsi
    jnz     1b
2:  and     $0xff, %eax
    pop     %rbp
    ret
END(mp_checksum)

/*
 * mp_parse(fp = %rdi) -> %eax: number of enabled processors (their APIC IDs
 * are stored in cpu_apic_ids), or -1 after printing why the table is unusable.
 */
FUNCTION(mp_parse)
    push    %rbp
    mov     %rsp, %rbp
    push    %rbx
    push    %r12
    push    %r13
    push    %r14
    push    %r15
    mov     4(%rdi), %ebx               /* configuration table address */
    lea     msg_mp_default(%rip), %rdi
    test    %ebx, %ebx
    jz      9f
    lea     msg_mp_signature(%rip), %rdi
    cmpl    $MP_CONFIG_SIG, (%rbx)
    jne     9f
    movzwl  MPC_LENGTH(%rbx), %esi
    mov     %rbx, %rdi
    call    mp_checksum
    lea     msg_mp_checksum(%rip), %rdi
    test    %eax, %eax
    jnz     9f
    movzwl  MPC_COUNT(%rbx), %r12d      /* entries left */
    lea     MPC_HEADER(%rbx), %r13      /* current entry */
    movzwl  MPC_LENGTH(%rbx), %r15d
    add     %rbx, %r15                  /* end of the base table */
    xor     %r14d, %r14d                /* processors found */
1:  test    %r12d, %r12d
    jz      5f
    movzbl  (%r13), %eax
    mov     $8, %ecx                    /* entry size */
    cmp     $MPE_PROCESSOR, %eax
    jne     2f
    mov     $20, %ecx
2:  lea     msg_mp_entry(%rip), %rdi
    cmp     $MPE_LAST_TYPE, %eax
    ja      9f
    lea     (%r13,%rcx), %rdx
    cmp     %r15, %rdx
    ja      9f                          /* runs past the base table */
    test    %eax, %eax
    jnz     4f
    testb   $1, 3(%r13)                 /* processor enabled? */
    jz      4f
    lea     msg_mp_too_many(%rip), %rdi
    cmp     $MAX_CPUS, %r14d
    jae     9f
    movzbl  1(%r13), %eax               /* local APIC ID */
    lea     cpu_apic_ids(%rip), %rdx
    mov     %al, (%rdx,%r14)
    inc     %r14d
4:  add     %rcx, %r13
    dec     %r12d
    jmp     1b
5:  mov     %r14d, %eax
    jmp     10f
9:  call    serial_puts                 /* %rdi: what is wrong */
    mov     $-1, %eax
10: pop     %r15
    pop     %r14
    pop     %r13
    pop     %r12
    pop     %rbx
    pop     %rbp
    ret
END(mp_parse)

    .section .rodata
msg_mp_default:
    .asciz "smp: MP default configurations (no configuration table) are not supported\n"
msg_mp_signature:
    .asciz "smp: MP configuration table has a bad signature\n"
msg_mp_checksum:
    .asciz "smp: MP configuration table has a bad checksum\n"
msg_mp_entry:
    .asciz "smp: MP configuration table has an unknown or truncated entry\n"
msg_mp_too_many:
    .asciz "smp: MP configuration table lists more than 256 processors\n"

    .data
    .p2align 3
OBJECT(mp_override)
    .quad   0                           /* a floating pointer mp_find returns first, or 0 */
END(mp_override)

    .bss
OBJECT(cpu_apic_ids)
    .space MAX_CPUS                     /* APIC ID of each enabled processor, in table order */
END(cpu_apic_ids)
