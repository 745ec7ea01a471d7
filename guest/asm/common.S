/*
 * common.S: code linked into every guest.
 *
 * _start (the ELF entry, first in .text) takes a stack, keeps the boot-info
 * pointer, initialises the UART and calls the guest's own guest_main(boot_info);
 * its return value becomes the exit status. Also here: serial output, a
 * decimal printer, a spinlock serialising serial output between CPUs, and
 * the debug-exit port. Calling convention: System V AMD64.
 */
#include "common.h"

    .section .text.entry, "ax"
    .code64

/* Entry on the BSP in long mode; RDI = boot-info block. Never returns. */
FUNCTION(_start)
    mov     $boot_stack_top, %rsp
    xor     %ebp, %ebp
    mov     %rdi, boot_info(%rip)
    call    serial_init
    mov     boot_info(%rip), %rdi
    call    guest_main
    mov     %eax, %edi
    call    exit_guest
END(_start)

    .text

/* Puts COM1 in 8N1 with UART interrupts off. The divisor is left alone. */
FUNCTION(serial_init)
    push    %rbp
    mov     %rsp, %rbp
    xor     %eax, %eax
    mov     $COM1_IER, %edx
    out     %al, %dx
    mov     $0x03, %al                  /* 8 data bits, no parity, 1 stop, DLAB off */
    mov     $COM1_LCR, %edx
    out     %al, %dx
    mov     $0x03, %al                  /* DTR | RTS */
    mov     $COM1_MCR, %edx
    out     %al, %dx
    pop     %rbp
    ret
END(serial_init)

/* serial_putc(c = %dil): waits (bounded) for THR empty, then writes c. */
FUNCTION(serial_putc)
    push    %rbp
    mov     %rsp, %rbp
    mov     $SERIAL_POLL_LIMIT, %ecx
    mov     $COM1_LSR, %edx
1:  in      %dx, %al
    test    $LSR_THRE, %al
    jnz     2f
    pause
    dec     %ecx
    jnz     1b                          /* give up waiting: write anyway */
2:  mov     %edi, %eax
    mov     $COM1_THR, %edx
    out     %al, %dx
    pop     %rbp
    ret
END(serial_putc)

/* serial_puts(s = %rdi): writes the NUL-terminated string s. */
FUNCTION(serial_puts)
    push    %rbp
    mov     %rsp, %rbp
    push    %rbx
    mov     %rdi, %rbx
1:  movzbl  (%rbx), %edi
    test    %edi, %edi
    jz      2f
    call    serial_putc
    inc     %rbx
    jmp     1b
2:  pop     %rbx
    pop     %rbp
    ret
END(serial_puts)

/* print_dec(v = %rdi): writes v in decimal (no division: subtracts powers of ten). */
FUNCTION(print_dec)
    push    %rbp
    mov     %rsp, %rbp
    push    %rbx
    push    %r12
    push    %r13
    push    %r14
    mov     %rdi, %rbx                  /* what is left to print */
    lea     pow10(%rip), %r12           /* current power of ten */
    mov     $20, %r13d                  /* powers left, 10^19 .. 10^0 */
    xor     %r14d, %r14d                /* 1 once a digit has been printed */
1:  mov     (%r12), %rcx
    xor     %edi, %edi                  /* this digit */
2:  cmp     %rcx, %rbx
    jb      3f
    sub     %rcx, %rbx
    inc     %edi
    jmp     2b
3:  or      %edi, %r14d                 /* skip leading zeros ... */
    jnz     4f
    cmp     $1, %r13d                   /* ... but not the last digit */
    jne     5f
4:  mov     $1, %r14d
    add     $0x30, %edi                 /* '0' */
    call    serial_putc
5:  add     $8, %r12
    dec     %r13d
    jnz     1b
    pop     %r14
    pop     %r13
    pop     %r12
    pop     %rbx
    pop     %rbp
    ret
END(print_dec)

/* serial_lock(): takes the serial spinlock; on timeout reports it and exits 5. */
FUNCTION(serial_lock)
    push    %rbp
    mov     %rsp, %rbp
    mov     $SPIN_LIMIT, %ecx
1:  mov     $1, %eax
    xchg    %eax, serial_lock_word(%rip) /* implicitly locked */
    test    %eax, %eax
    jz      2f
    pause
    dec     %ecx
    jnz     1b
    lea     msg_lock_timeout(%rip), %rdi
    call    serial_puts
    mov     $EXIT_LOCK_TIMEOUT, %edi
    call    exit_guest
2:  pop     %rbp
    ret
END(serial_lock)

/* serial_unlock(): releases the serial spinlock. */
FUNCTION(serial_unlock)
    push    %rbp
    mov     %rsp, %rbp
    movl    $0, serial_lock_word(%rip)
    pop     %rbp
    ret
END(serial_unlock)

/* exit_guest(status = %edi): ends the VM through the debug-exit port. Never returns. */
FUNCTION(exit_guest)
    push    %rbp
    mov     %rsp, %rbp
    mov     %edi, %eax
    out     %al, $EXIT_PORT
    ud2                                 /* port not wired: no IDT, so this triple-faults */
END(exit_guest)

/* halt_forever(): disables interrupts and halts for good. Never returns. */
FUNCTION(halt_forever)
    push    %rbp
    mov     %rsp, %rbp
    cli
1:  hlt
    jmp     1b
END(halt_forever)

    .section .rodata
    .p2align 3
pow10:
    .quad 10000000000000000000, 1000000000000000000, 100000000000000000
    .quad 10000000000000000, 1000000000000000, 100000000000000, 10000000000000
    .quad 1000000000000, 100000000000, 10000000000, 1000000000, 100000000
    .quad 10000000, 1000000, 100000, 10000, 1000, 100, 10, 1
    .size pow10, . - pow10
msg_lock_timeout:
    .asciz "guest: timed out waiting for the serial lock\n"

    .data
    .p2align 3
OBJECT(boot_info)
    .quad 0                             /* boot-info pointer given at entry */
END(boot_info)
    .p2align 2
serial_lock_word:
    .long 0

    .bss
    .p2align 12
boot_stack:
    .space BOOT_STACK_SIZE
boot_stack_top:
