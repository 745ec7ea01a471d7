/*
 * breakpoint.S: the `breakpoint` guest. Installs an IDT whose #BP gate
 * (vector 3) points at bp_handler, executes int3 at bp_site, and checks
 * that the handler ran once with the frame of a native int3: the saved RIP
 * is the address right after the int3 (bp_after), then returns with iretq.
 * Then it executes fwait with no x87 exception pending (a no-op), which a
 * software KVM's emulator also lacks (hvtrace completes it).
 * Exit statuses: 0 delivered with the native frame, 1 the handler never
 * ran, 2 the frame's RIP was wrong (printed). With no delivery at all the
 * VM ends on the host's failure instead (an emulation failure on 0xCC).
 */
#include "common.h"

#define EXIT_NOT_HANDLED    1
#define EXIT_BAD_FRAME      2

    .text
    .code64

/* guest_main(boot_info = %rdi): returns the exit status. */
FUNCTION(guest_main)
    push    %rbp
    mov     %rsp, %rbp
    call    bp_install
    lea     msg_before(%rip), %rdi
    call    serial_puts
    call    bp_site
    cmpl    $1, bp_hits(%rip)
    jne     1f
    lea     bp_after(%rip), %rax
    cmp     bp_frame_rip(%rip), %rax
    jne     2f
    lea     msg_ok(%rip), %rdi
    call    serial_puts
    fninit                              /* no x87 exception pending */
    fwait
    lea     msg_fwait(%rip), %rdi
    call    serial_puts
    mov     $EXIT_OK, %eax
    pop     %rbp
    ret
1:  lea     msg_not_handled(%rip), %rdi
    call    serial_puts
    mov     $EXIT_NOT_HANDLED, %eax
    pop     %rbp
    ret
2:  lea     msg_bad_frame(%rip), %rdi
    call    serial_puts
    mov     bp_frame_rip(%rip), %rdi
    lea     bp_after(%rip), %rax
    sub     %rax, %rdi                  /* prints the frame's RIP - bp_after */
    call    print_dec
    lea     msg_newline(%rip), %rdi
    call    serial_puts
    mov     $EXIT_BAD_FRAME, %eax
    pop     %rbp
    ret
END(guest_main)

/* bp_install(): the #BP gate (set_gate, gate.S) and lidt. */
FUNCTION(bp_install)
    push    %rbp
    mov     %rsp, %rbp
    mov     $3, %edi
    lea     bp_handler(%rip), %rsi
    call    set_gate
    lidt    bp_idt_ptr(%rip)
    pop     %rbp
    ret
END(bp_install)

/* bp_site(): the int3; bp_after is where a native #BP frame points. */
FUNCTION(bp_site)
    int3
    .globl bp_after
bp_after:
    ret
END(bp_site)

/* bp_handler: counts the hit, keeps the frame's RIP, returns past the int3. */
FUNCTION(bp_handler)
    push    %rax
    mov     8(%rsp), %rax               /* the frame: RIP, CS, RFLAGS, RSP, SS */
    mov     %rax, bp_frame_rip(%rip)
    incl    bp_hits(%rip)
    pop     %rax
    iretq
END(bp_handler)

    .section .rodata
msg_before:      .asciz "breakpoint: executing int3\n"
msg_ok:          .asciz "breakpoint: #BP delivered with the native frame\n"
msg_fwait:       .asciz "breakpoint: fwait completed\n"
msg_not_handled: .asciz "breakpoint: the #BP handler never ran\n"
msg_bad_frame:   .asciz "breakpoint: the #BP frame's RIP is off by "
msg_newline:     .asciz "\n"

    .data
    .p2align 3
bp_idt_ptr:
    .word 4 * 16 - 1
    .quad idt
bp_frame_rip:
    .quad 0
bp_hits:
    .long 0

    .bss
    .p2align 4
OBJECT(idt)
    .space 4 * 16
END(idt)
