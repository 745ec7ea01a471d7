/*
 * idt.S: the interrupt descriptor table of the guests that take interrupts
 * through plain 64-bit interrupt gates (ipi-bench, xcall-lab), shared by
 * all their CPUs (each loads it: `lidt idt_ptr(%rip)`).
 *
 * idt_init_gates points exceptions 0-31 at exception_stubs (which pass the
 * vector on), vectors 32-254 at unexpected_interrupt and the spurious vector
 * 0xff at spurious_interrupt, then installs the guest's own handlers from
 * its table of gates. Both exception_entry and unexpected_interrupt
 * end in the guest's unexpected_event(vector = %rdi, -1 for an interrupt),
 * which reports the event (print_unexpected_event) and ends the run.
 * set_gate is in gate.S.
 */
#include "common.h"

/* 64-bit interrupt gates, DPL 0. */
#define IDT_ENTRIES         256
#define EXC_STUB_SIZE       8
#define VEC_SPURIOUS        0xff

    .text
    .code64

/*
 * idt_init_gates(gates = %rdi): every gate to its default handler (see
 * above), then the guest's own: gates is a table of {u64 vector, u64
 * handler} entries ended by a 0 handler.
 */
FUNCTION(idt_init_gates)
    push    %rbp
    mov     %rsp, %rbp
    push    %rbx
    push    %r12
    mov     %rdi, %r12
    xor     %ebx, %ebx
1:  mov     %ebx, %edi                  /* exceptions */
    lea     exception_stubs(%rip), %rsi
    lea     (%rsi,%rbx,EXC_STUB_SIZE), %rsi
    call    set_gate
    inc     %ebx
    cmp     $32, %ebx
    jb      1b
2:  mov     %ebx, %edi                  /* interrupts */
    lea     unexpected_interrupt(%rip), %rsi
    call    set_gate
    inc     %ebx
    cmp     $IDT_ENTRIES, %ebx
    jb      2b
    mov     $VEC_SPURIOUS, %edi
    lea     spurious_interrupt(%rip), %rsi
    call    set_gate
3:  mov     8(%r12), %rsi               /* the guest's gates */
    test    %rsi, %rsi
    jz      4f
    mov     (%r12), %edi
    call    set_gate
    add     $16, %r12
    jmp     3b
4:  pop     %r12
    pop     %rbx
    pop     %rbp
    ret
END(idt_init_gates)

/* Spurious vector: no EOI, as the SDM says. */
FUNCTION(spurious_interrupt)
    iretq
END(spurious_interrupt)

/* Any other vector 32-254 without a handler: reports it and ends the run. */
FUNCTION(unexpected_interrupt)
    mov     $-1, %rdi
    jmp     unexpected_event
END(unexpected_interrupt)

/*
 * Exceptions 0-31: stub i, at exception_stubs + i * EXC_STUB_SIZE, passes
 * vector i on (push imm8: 2 bytes, jmp: at most 5, padded to 8).
 */
FUNCTION(exception_stubs)
    .set    exc_vector, 0
    .rept   32
    .p2align 3
    push    $exc_vector
    jmp     exception_entry
    .set    exc_vector, exc_vector + 1
    .endr
END(exception_stubs)

/* Common tail of the exception stubs: the vector is on the stack. */
FUNCTION(exception_entry)
    pop     %rdi
    jmp     unexpected_event
END(exception_entry)

/*
 * print_unexpected_event(vector = %rdi, prefix = %rsi, on = %rdx): takes the
 * serial lock and prints "<prefix>exception V<on>A" or "<prefix>unexpected
 * interrupt<on>A" (vector -1), A = this CPU's APIC ID, and a newline. Leaves
 * the lock held.
 */
FUNCTION(print_unexpected_event)
    push    %rbp
    mov     %rsp, %rbp
    push    %rdi                        /* -8(%rbp): vector */
    push    %rsi                        /* -16(%rbp): prefix */
    push    %rdx                        /* -24(%rbp): on */
    push    %rdx                        /* keeps %rsp 16-byte aligned */
    call    serial_lock
    mov     -16(%rbp), %rdi
    call    serial_puts
    cmpq    $0, -8(%rbp)
    jl      1f
    PUTS    msg_exception
    mov     -8(%rbp), %rdi
    call    print_dec
    jmp     2f
1:  PUTS    msg_unexpected_irq
2:  mov     -24(%rbp), %rdi
    call    serial_puts
    call    lapic_id
    mov     %eax, %edi
    call    print_dec
    PUTS    msg_newline
    mov     %rbp, %rsp
    pop     %rbp
    ret
END(print_unexpected_event)

    .section .rodata
msg_exception:      .asciz "exception "
msg_unexpected_irq: .asciz "unexpected interrupt"
msg_newline:        .asciz "\n"

    .data
    .p2align 3
OBJECT(idt_ptr)
    .word IDT_ENTRIES * 16 - 1
    .quad idt
END(idt_ptr)

    .bss
    .p2align 12
OBJECT(idt)
    .space IDT_ENTRIES * 16
END(idt)
