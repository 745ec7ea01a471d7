/*
 * fault.S: the `fault` guest. Prints one line, then executes a VEX-encoded
 * instruction (BMI1 andn, register-only) that KVM's instruction emulator
 * cannot run at CPL0, ending the VM with an emulation failure. Where the
 * instruction runs natively, ud2 follows; with no IDT that triple-faults.
 * Never exits 0.
 */
#include "common.h"

    .text
    .code64

/* guest_main(boot_info = %rdi): does not return normally. */
FUNCTION(guest_main)
    push    %rbp
    mov     %rsp, %rbp
    lea     msg_fault(%rip), %rdi
    call    serial_puts
    call    do_fault
    mov     $1, %eax                    /* not reached; never report success */
    pop     %rbp
    ret
END(guest_main)

/* do_fault(): the instruction the emulator lacks, then ud2. */
FUNCTION(do_fault)
    push    %rbp
    mov     %rsp, %rbp
    andn    %rax, %rbx, %rcx            /* c4 e2 e0 f2 c8 */
    ud2
END(do_fault)

    .section .rodata
msg_fault:
    .asciz "fault: executing an instruction KVM cannot emulate at CPL0\n"
