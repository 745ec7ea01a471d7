/*
 * apic_conf_ioapic.S: `apic-conformance` checks of the IOAPIC (at
 * 0xFEC00000: IOREGSEL +0x00, IOWIN +0x10, EOI +0x40) and of how local APIC
 * EOIs reach it. Lines are driven by the IRQ test device: a write of v to
 * I/O port 0x2000 + n sets line n to level v != 0. The 8259 PIC is masked
 * at start-up so ISA lines do not also arrive through it.
 *
 * ioapic_level        A level-triggered, active-high, fixed entry (pin 10,
 *                     physical destination = the BSP): raising the line
 *                     sends the interrupt, the local APIC sets its IRR and
 *                     TMR bits (SDM 10.8.4: TMR set for level-triggered on
 *                     acceptance) and the entry's remote IRR is set (82093AA
 *                     datasheet 3.2.4); the EOI of a level-triggered vector
 *                     is broadcast to the IOAPIC (SDM 10.8.5), which clears
 *                     remote IRR and, the line still being high, sends the
 *                     interrupt again; after the line is lowered, EOI clears
 *                     remote IRR and nothing more comes.
 * directed_eoi        Only if version bit 24 (EOI-broadcast suppression) is
 *                     set and the IOAPIC has an EOI register (version >=
 *                     0x20). With SVR bit 12 set, the local APIC EOI of a
 *                     level-triggered vector is not broadcast: remote IRR
 *                     stays set, and while it is set the IOAPIC does not
 *                     deliver again even though the line is high and the
 *                     vector is no longer in service; writing the vector to
 *                     the IOAPIC EOI register clears remote IRR (and with
 *                     the line high, delivers again) (SDM 10.8.5).
 */
#include "apic_conformance.h"

    .text
    .code64

/*
 * wait_irr_bit(vector = %edi) -> %eax: waits (bounded) until vector's IRR
 * bit is set; returns the bit.
 */
FUNCTION(wait_irr_bit)
    push    %rbp
    mov     %rsp, %rbp
    push    %rbx
    push    %r12
    mov     %edi, %ebx
    call    tsc_now
    lea     WAIT_TICKS(%rax), %r12
1:  mov     $APIC_IRR, %edi
    mov     %ebx, %esi
    call    lapic_vector_bit
    test    %eax, %eax
    jnz     2f
    call    tsc_now
    cmp     %r12, %rax
    jb      1b
    xor     %eax, %eax
2:  pop     %r12
    pop     %rbx
    pop     %rbp
    ret
END(wait_irr_bit)

/*
 * ioapic_level_hook(vector, count): first run: record remote IRR, TMR and
 * ISR bits (hook_rec[0..2]) and EOI with the line still high; second run:
 * record remote IRR (hook_rec[3]), lower the line, EOI, record remote IRR
 * (hook_rec[4]); later runs: lower the line and EOI.
 */
FUNCTION(ioapic_level_hook)
    push    %rbp
    mov     %rsp, %rbp
    push    %rbx
    push    %r12
    lea     hook_rec(%rip), %rbx
    mov     %esi, %r12d
    cmp     $1, %r12d
    jne     1f
    mov     $PIN_LEVEL, %edi
    call    ioapic_remote_irr
    mov     %rax, 0(%rbx)
    mov     $APIC_TMR, %edi
    mov     $VEC_IOAPIC_LEVEL, %esi
    call    lapic_vector_bit
    mov     %rax, 8(%rbx)
    mov     $APIC_ISR, %edi
    mov     $VEC_IOAPIC_LEVEL, %esi
    call    lapic_vector_bit
    mov     %rax, 16(%rbx)
    call    lapic_eoi
    jmp     9f
1:  cmp     $2, %r12d
    jne     2f
    mov     $PIN_LEVEL, %edi
    call    ioapic_remote_irr
    mov     %rax, 24(%rbx)
2:  mov     $PIN_LEVEL, %edi
    xor     %esi, %esi
    call    irq_line
    call    lapic_eoi
    cmp     $2, %r12d
    jne     9f
    mov     $PIN_LEVEL, %edi
    call    ioapic_remote_irr
    mov     %rax, 32(%rbx)
9:  pop     %r12
    pop     %rbx
    pop     %rbp
    ret
END(ioapic_level_hook)

/* check_ioapic_level() -> %eax: RESULT_*. */
FUNCTION(check_ioapic_level)
    CHECK_ENTER
    cli
    mov     $IOAPIC_REG_VERSION, %edi
    call    ioapic_read
    shr     $16, %eax
    and     $0xff, %eax
    EXPECT_GE %eax, $PIN_LEVEL, "IOAPIC max redirection entry (version bits 23:16)"
    mov     $VEC_IOAPIC_LEVEL, %edi
    lea     ioapic_level_hook(%rip), %rsi
    call    set_hook
    mov     bsp_apic_id(%rip), %edx
    shl     $24, %edx
    mov     $PIN_LEVEL, %edi
    mov     $(REDIR_LEVEL | VEC_IOAPIC_LEVEL), %esi
    call    ioapic_set_redir
    mov     $PIN_LEVEL, %edi
    call    ioapic_redir_low
    and     $0x1ffff, %eax
    EXPECT_EQ %eax, $(REDIR_LEVEL | VEC_IOAPIC_LEVEL), "redirection entry 10 read back"
    mov     $PIN_LEVEL, %edi
    mov     $1, %esi
    call    irq_line
    mov     $VEC_IOAPIC_LEVEL, %edi
    call    wait_irr_bit
    EXPECT_EQ %eax, $1, "IRR bit of 0x62 after raising line 10 (IF=0)"
    EXPECT_VECTOR_BIT APIC_TMR, VEC_IOAPIC_LEVEL, 1, "TMR bit of the level-triggered 0x62 once accepted"
    mov     $PIN_LEVEL, %edi
    call    ioapic_remote_irr
    EXPECT_EQ %eax, $1, "remote IRR of entry 10 once the local APIC accepted"
    sti
    WAIT_COUNT VEC_IOAPIC_LEVEL, 2, "deliveries of 0x62 (again after an EOI with the line high)"
    call    settle
    cli
    lea     hook_rec(%rip), %rbx
    EXPECT_EQ COUNT(VEC_IOAPIC_LEVEL), $2, "deliveries of 0x62 (twice: none after lowering the line and EOI)"
    EXPECT_EQ 0(%rbx), $1, "remote IRR in the first handler"
    EXPECT_EQ 8(%rbx), $1, "TMR bit in the first handler"
    EXPECT_EQ 16(%rbx), $1, "ISR bit in the first handler"
    EXPECT_EQ 24(%rbx), $1, "remote IRR in the second handler"
    EXPECT_EQ 32(%rbx), $0, "remote IRR after lowering the line and EOI"
    mov     $PIN_LEVEL, %edi
    call    ioapic_remote_irr
    EXPECT_EQ %eax, $0, "remote IRR at the end"
    EXPECT_VECTOR_BIT APIC_IRR, VEC_IOAPIC_LEVEL, 0, "IRR bit of 0x62 at the end"
    CHECK_PASS
END(check_ioapic_level)

/*
 * directed_eoi_hook(vector, count): first run (line low by now): EOI to the
 * local APIC, record remote IRR (hook_rec[0]) and the ISR bit (hook_rec[1]),
 * EOI through the IOAPIC EOI register, record remote IRR (hook_rec[2]).
 * Second run (line held high): local EOI, record remote IRR (hook_rec[3]),
 * set IF=1 and wait: no delivery may come (count in hook_rec[4]); then the
 * IOAPIC EOI, which delivers again. Later runs: lower the line, both EOIs.
 */
FUNCTION(directed_eoi_hook)
    push    %rbp
    mov     %rsp, %rbp
    push    %rbx
    push    %r12
    lea     hook_rec(%rip), %rbx
    mov     %esi, %r12d
    cmp     $1, %r12d
    jne     1f
    mov     $PIN_DIRECTED, %edi
    xor     %esi, %esi
    call    irq_line
    call    lapic_eoi
    mov     $PIN_DIRECTED, %edi
    call    ioapic_remote_irr
    mov     %rax, 0(%rbx)
    mov     $APIC_ISR, %edi
    mov     $VEC_IOAPIC_DIRECTED, %esi
    call    lapic_vector_bit
    mov     %rax, 8(%rbx)
    mov     $VEC_IOAPIC_DIRECTED, %edi
    call    ioapic_eoi
    mov     $PIN_DIRECTED, %edi
    call    ioapic_remote_irr
    mov     %rax, 16(%rbx)
    jmp     9f
1:  cmp     $2, %r12d
    jne     2f
    call    lapic_eoi
    mov     $PIN_DIRECTED, %edi
    call    ioapic_remote_irr
    mov     %rax, 24(%rbx)
    sti
    call    settle
    cli
    mov     COUNT(VEC_IOAPIC_DIRECTED), %eax
    mov     %rax, 32(%rbx)
    mov     $VEC_IOAPIC_DIRECTED, %edi
    call    ioapic_eoi
    jmp     9f
2:  mov     $PIN_DIRECTED, %edi
    xor     %esi, %esi
    call    irq_line
    call    lapic_eoi
    mov     $VEC_IOAPIC_DIRECTED, %edi
    call    ioapic_eoi
9:  pop     %r12
    pop     %rbx
    pop     %rbp
    ret
END(directed_eoi_hook)

/* check_directed_eoi() -> %eax: RESULT_*. */
FUNCTION(check_directed_eoi)
    CHECK_ENTER
    mov     $APIC_VERSION, %edi
    call    lapic_read
    test    $VERSION_EOI_SUPPRESS, %eax
    jnz     1f
    SKIP_MSG "version register bit 24 (EOI-broadcast suppression) is clear"
1:  mov     $IOAPIC_REG_VERSION, %edi
    call    ioapic_read
    and     $0xff, %eax
    cmp     $0x20, %eax
    jae     2f
    SKIP_MSG "IOAPIC version below 0x20 has no EOI register"
2:  cli
    mov     $APIC_SVR, %edi
    mov     $(SVR_ENABLE_SPURIOUS | SVR_SUPPRESS_EOI), %esi
    call    lapic_write
    mov     $APIC_SVR, %edi
    call    lapic_read
    and     $SVR_SUPPRESS_EOI, %eax
    EXPECT_EQ %eax, $SVR_SUPPRESS_EOI, "SVR bit 12 (suppress EOI broadcast) read back"
    mov     $VEC_IOAPIC_DIRECTED, %edi
    lea     directed_eoi_hook(%rip), %rsi
    call    set_hook
    mov     bsp_apic_id(%rip), %edx
    shl     $24, %edx
    mov     $PIN_DIRECTED, %edi
    mov     $(REDIR_LEVEL | VEC_IOAPIC_DIRECTED), %esi
    call    ioapic_set_redir
    mov     $PIN_DIRECTED, %edi
    mov     $1, %esi
    call    irq_line
    sti
    WAIT_COUNT VEC_IOAPIC_DIRECTED, 1, "deliveries of 0x63 from line 11"
    call    settle
    cli
    lea     hook_rec(%rip), %rbx
    EXPECT_EQ COUNT(VEC_IOAPIC_DIRECTED), $1, "deliveries of 0x63 (line lowered in the handler)"
    EXPECT_EQ 0(%rbx), $1, "remote IRR after the local APIC EOI with broadcast suppressed"
    EXPECT_EQ 8(%rbx), $0, "ISR bit of 0x63 after the local APIC EOI"
    EXPECT_EQ 16(%rbx), $0, "remote IRR after writing 0x63 to the IOAPIC EOI register"
    mov     $PIN_DIRECTED, %edi
    mov     $1, %esi
    call    irq_line                    /* second round: the line stays high */
    sti
    WAIT_COUNT VEC_IOAPIC_DIRECTED, 3, "deliveries of 0x63 (again after the IOAPIC EOI with the line high)"
    call    settle
    cli
    EXPECT_EQ 24(%rbx), $1, "remote IRR after the local EOI with the line high"
    EXPECT_EQ 32(%rbx), $2, "deliveries of 0x63 while remote IRR was set (line high, IF=1)"
    EXPECT_EQ COUNT(VEC_IOAPIC_DIRECTED), $3, "deliveries of 0x63 in all"
    mov     $PIN_DIRECTED, %edi
    call    ioapic_remote_irr
    EXPECT_EQ %eax, $0, "remote IRR at the end"
    CHECK_PASS
END(check_directed_eoi)
