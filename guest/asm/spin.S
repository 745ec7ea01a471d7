/*
 * spin.S: the `spin` guest. Prints one line, then loops forever with
 * interrupts disabled, so the VMM's --timeout can be tested. spin_forever is
 * the one deliberately unbounded loop among the guests.
 */
#include "common.h"

    .text
    .code64

/* guest_main(boot_info = %rdi): never returns. */
FUNCTION(guest_main)
    push    %rbp
    mov     %rsp, %rbp
    lea     msg_spin(%rip), %rdi
    call    serial_puts
    call    spin_forever
    mov     $1, %eax                    /* not reached */
    pop     %rbp
    ret
END(guest_main)

/* spin_forever(): cli, then pause in a loop for ever. */
FUNCTION(spin_forever)
    push    %rbp
    mov     %rsp, %rbp
    cli
1:  pause
    jmp     1b
END(spin_forever)

    .section .rodata
msg_spin:
    .asciz "spin: looping forever with interrupts disabled\n"
