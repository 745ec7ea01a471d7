/*
 * gate.S: set_gate, which writes one 64-bit interrupt gate into the guest's
 * IDT (the symbol `idt`: idt.S's 256 entries, or a guest's own table).
 */
#include "common.h"

#define GATE_INTR           0x8e00      /* present, DPL 0, type 0xe; IST 0 */

    .text
    .code64

/* set_gate(vector = %edi, handler = %rsi): a 64-bit interrupt gate, CS = SEL_CODE64. */
FUNCTION(set_gate)
    push    %rbp
    mov     %rsp, %rbp
    mov     %edi, %edi
    shl     $4, %rdi
    lea     idt(%rip), %rax
    add     %rax, %rdi
    mov     %rsi, %rax
    mov     %ax, (%rdi)                 /* offset 15:0 */
    movw    $SEL_CODE64, 2(%rdi)
    movw    $GATE_INTR, 4(%rdi)
    shr     $16, %rax
    mov     %ax, 6(%rdi)                /* offset 31:16 */
    shr     $16, %rax
    mov     %eax, 8(%rdi)               /* offset 63:32 */
    movl    $0, 12(%rdi)
    pop     %rbp
    ret
END(set_gate)
