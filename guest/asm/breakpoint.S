/*
 * breakpoint.S: the `breakpoint` guest. Installs an IDT whose #BP gate
 * (vector 3) points at bp_handler, executes int3 at bp_site, and checks
 * that the handler ran once with the frame of a native int3: the saved RIP
 * is the address right after the int3 (bp_after), then returns with iretq.
 * Then it executes fwait with no x87 exception pending (a no-op), and
 * stmxcsr/ldmxcsr (with CR4.OSFXSR set): MXCSR starts at its reset value
 * 0x1f80, a loaded value reads back, and a value with reserved bit 31 set
 * raises #GP(0) at the ldmxcsr, leaving MXCSR as it was. A software KVM's
 * emulator lacks all three (hvtrace completes them).
 * Exit statuses: 0 all as above, 1 the #BP handler never ran, 2 the #BP
 * frame's RIP was wrong (printed), 3 MXCSR read back wrong (printed), 4 no
 * #GP (or a wrong frame or error code) for a reserved MXCSR bit. With no
 * delivery at all the VM ends on the host's failure instead (an emulation
 * failure on 0xCC).
 */
#include "common.h"

#define EXIT_NOT_HANDLED    1
#define EXIT_BAD_FRAME      2
#define EXIT_BAD_MXCSR      3
#define EXIT_NO_GP          4
#define CR4_OSFXSR          (1 << 9)
#define MXCSR_RESET         0x1f80
#define MXCSR_ROUND_ZERO    0x7f80      /* reset value with RC = 11b */

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
    call    mxcsr_check
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

/*
 * mxcsr_check(): returns the exit status of the MXCSR checks (EXIT_OK when
 * stmxcsr, ldmxcsr and the #GP for a reserved bit behave as the SDM says).
 */
FUNCTION(mxcsr_check)
    push    %rbp
    mov     %rsp, %rbp
    mov     %cr4, %rax
    or      $CR4_OSFXSR, %rax
    mov     %rax, %cr4
    stmxcsr mxcsr_value(%rip)
    cmpl    $MXCSR_RESET, mxcsr_value(%rip)
    jne     1f
    movl    $MXCSR_ROUND_ZERO, mxcsr_value(%rip)
    ldmxcsr mxcsr_value(%rip)
    movl    $0, mxcsr_value(%rip)
    stmxcsr mxcsr_value(%rip)
    cmpl    $MXCSR_ROUND_ZERO, mxcsr_value(%rip)
    jne     1f
    lea     msg_mxcsr(%rip), %rdi
    call    serial_puts
    movl    $(MXCSR_RESET | 0x80000000), mxcsr_value(%rip)
    call    gp_site
    cmpl    $1, gp_hits(%rip)
    jne     2f
    cmpq    $0, gp_error(%rip)
    jne     2f
    lea     gp_site(%rip), %rax
    cmp     gp_frame_rip(%rip), %rax
    jne     2f
    stmxcsr mxcsr_value(%rip)
    cmpl    $MXCSR_ROUND_ZERO, mxcsr_value(%rip)
    jne     1f
    lea     msg_gp(%rip), %rdi
    call    serial_puts
    mov     $EXIT_OK, %eax
    jmp     9f
1:  lea     msg_bad_mxcsr(%rip), %rdi
    call    serial_puts
    mov     mxcsr_value(%rip), %edi
    call    print_dec
    lea     msg_newline(%rip), %rdi
    call    serial_puts
    mov     $EXIT_BAD_MXCSR, %eax
    jmp     9f
2:  lea     msg_no_gp(%rip), %rdi
    call    serial_puts
    mov     $EXIT_NO_GP, %eax
9:  pop     %rbp
    ret
END(mxcsr_check)

/* gp_site(): ldmxcsr of mxcsr_value, which must raise #GP(0) (gp_handler
 * resumes at gp_after). */
FUNCTION(gp_site)
    ldmxcsr mxcsr_value(%rip)
    .globl gp_after
gp_after:
    ret
END(gp_site)

/* gp_handler: counts the #GP, keeps its error code and frame RIP, resumes at
 * gp_after (a fault's frame points at the faulting instruction). */
FUNCTION(gp_handler)
    push    %rax
    mov     8(%rsp), %rax               /* the error code, then RIP, CS, ... */
    mov     %rax, gp_error(%rip)
    mov     16(%rsp), %rax
    mov     %rax, gp_frame_rip(%rip)
    incl    gp_hits(%rip)
    lea     gp_after(%rip), %rax
    mov     %rax, 16(%rsp)
    pop     %rax
    add     $8, %rsp                    /* drop the error code */
    iretq
END(gp_handler)

/* bp_install(): the #BP and #GP gates (set_gate, gate.S) and lidt. */
FUNCTION(bp_install)
    push    %rbp
    mov     %rsp, %rbp
    mov     $3, %edi
    lea     bp_handler(%rip), %rsi
    call    set_gate
    mov     $13, %edi
    lea     gp_handler(%rip), %rsi
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
msg_mxcsr:       .asciz "breakpoint: stmxcsr/ldmxcsr completed\n"
msg_gp:          .asciz "breakpoint: ldmxcsr of a reserved bit raised #GP(0)\n"
msg_bad_mxcsr:   .asciz "breakpoint: MXCSR read back as "
msg_no_gp:       .asciz "breakpoint: ldmxcsr of a reserved bit did not raise #GP(0) at it\n"
msg_not_handled: .asciz "breakpoint: the #BP handler never ran\n"
msg_bad_frame:   .asciz "breakpoint: the #BP frame's RIP is off by "
msg_newline:     .asciz "\n"

    .data
    .p2align 3
bp_idt_ptr:
    .word 16 * 16 - 1
    .quad idt
bp_frame_rip:
    .quad 0
bp_hits:
    .long 0
gp_frame_rip:
    .quad 0
gp_error:
    .quad 0
gp_hits:
    .long 0
mxcsr_value:
    .long 0

    .bss
    .p2align 4
OBJECT(idt)
    .space 16 * 16
END(idt)
