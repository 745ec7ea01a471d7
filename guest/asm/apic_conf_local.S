/*
 * apic_conf_local.S: `apic-conformance` checks of one local APIC (the BSP's).
 *
 * interrupt_return    An interrupt through a 64-bit interrupt gate runs the
 *                     handler with IF=0 and `iretq` returns to the
 *                     interrupted code with RSP and RFLAGS.IF restored; a
 *                     fixed interrupt sent while IF=0 waits in the IRR
 *                     (SDM 6.8.1, 6.12.1.3, 6.14).
 * version             Version register: bits 7:0 = 1xH for an integrated
 *                     APIC, bits 23:16 = number of LVT entries - 1 (4 to 6
 *                     on 64-bit processors), reserved bits 15:8 and 31:25
 *                     clear (SDM 10.4.8).
 * apic_id             The ID register (bits 31:24) holds the initial APIC ID
 *                     reported by CPUID.1:EBX[31:24] and CPUID.0BH:EDX, the
 *                     one the boot info and the MP table give for the BSP
 *                     (SDM 10.4.6).
 * reset_state         Before any setup (BSP: power-up; APs: after INIT):
 *                     TPR, PPR, LDR, timer counts and divide 0; DFR all 1s;
 *                     SVR 0xFF; every LVT 0x00010000, i.e. only the mask bit
 *                     set (SDM 10.4.7.1, 10.4.7.3, 10.12.5.1), on every CPU.
 * readonly_registers  Writes to the version, PPR, ISR, TMR, IRR and
 *                     current-count registers change nothing and deliver
 *                     nothing (SDM 10.4.1 table 10-1: read only).
 * tpr_cr8             MOV to CR8 sets TPR[7:4] (TPR[3:0] = 0), MOV from CR8
 *                     reads TPR[7:4], and CR8 masks like TPR (SDM 10.8.6.1).
 * tpr_masking         A fixed interrupt is delivered only when its priority
 *                     class (vector[7:4]) is above PPR[7:4]; otherwise it
 *                     stays in the IRR until TPR drops (SDM 10.8.3.1).
 * ppr_rule            PPR = TPR if TPR[7:4] >= ISRV[7:4], else ISRV[7:4]:0
 *                     (SDM 10.8.3.1), checked inside a handler with several
 *                     TPR values, and again after EOI.
 * priority_order      Several pending interrupts are delivered highest
 *                     vector first once IF=1 (SDM 10.8.3.1, 10.8.4).
 * nested_interrupts   A handler that sets IF=1 is preempted by a higher
 *                     class only; the same or a lower class waits for its
 *                     EOI and is then delivered in priority order
 *                     (SDM 10.8.3.1).
 * early_eoi           A handler that writes EOI first, with IF=0 (interrupt
 *                     gate), then sends itself the same vector: the new
 *                     interrupt is accepted into the IRR but not delivered
 *                     while IF=0; `iretq` restores IF=1 and it is delivered
 *                     exactly once (SDM 10.8.4, 10.8.5, 6.8.1).
 * self_ipi            ICR self shorthand and a physical destination equal to
 *                     the own APIC ID deliver once to this CPU only; the ICR
 *                     reads back what was written with delivery status idle
 *                     (SDM 10.6.1).
 * esr_illegal_vector  An IPI with a vector below 16 sets ESR bit 5 (send
 *                     illegal vector), visible only after the write that
 *                     latches errors into the ESR; the next write clears it;
 *                     the error interrupt goes through LVT error; the
 *                     illegal vector is not delivered (SDM 10.5.3, 10.6.1).
 */
#include "apic_conformance.h"

#define PPR_CASES 5                     /* entries in ppr_cases */

    .text
    .code64

/* check_interrupt_return() -> %eax: RESULT_*. */
FUNCTION(check_interrupt_return)
    CHECK_ENTER
    cli
    mov     $VEC_RETURN, %edi
    call    ipi_self
    EXPECT_EQ %eax, $0, "ICR delivery status after a self IPI (1: stayed busy)"
    EXPECT_VECTOR_BIT APIC_IRR, VEC_RETURN, 1, "IRR bit of 0x51 sent with IF=0"
    EXPECT_EQ COUNT(VEC_RETURN), $0, "deliveries of 0x51 with IF=0"
    mov     %rsp, %r12
    sti
    WAIT_COUNT VEC_RETURN, 1, "deliveries of 0x51 after sti"
    pushf
    pop     %r13
    cli
    EXPECT_EQ64 %rsp, %r12, "RSP after iretq"
    and     $0x200, %r13d
    EXPECT_EQ %r13d, $0x200, "RFLAGS.IF after iretq"
    mov     %gs:PC_HANDLER_FLAGS, %eax
    and     $0x200, %eax
    EXPECT_EQ %eax, $0, "RFLAGS.IF inside the handler (interrupt gate)"
    sti
    call    settle
    cli
    EXPECT_EQ COUNT(VEC_RETURN), $1, "deliveries of 0x51"
    EXPECT_VECTOR_BIT APIC_ISR, VEC_RETURN, 0, "ISR bit of 0x51 after its EOI"
    EXPECT_VECTOR_BIT APIC_IRR, VEC_RETURN, 0, "IRR bit of 0x51 after delivery"
    CHECK_PASS
END(check_interrupt_return)

/* check_version() -> %eax: RESULT_*. */
FUNCTION(check_version)
    CHECK_ENTER
    mov     $APIC_VERSION, %edi
    call    lapic_read
    mov     %eax, %ebx
    and     $0xf0, %eax
    EXPECT_EQ %eax, $0x10, "version register bits 7:4 (integrated APIC: 0x1x)"
    mov     %ebx, %eax
    shr     $16, %eax
    and     $0xff, %eax
    EXPECT_GE %eax, $4, "max LVT entry (version bits 23:16)"
    EXPECT_LE %eax, $6, "max LVT entry (version bits 23:16)"
    mov     %ebx, %eax
    and     $0xfe00ff00, %eax
    EXPECT_EQ %eax, $0, "version register reserved bits 31:25 and 15:8"
    CHECK_PASS
END(check_version)

/* check_apic_id() -> %eax: RESULT_*. */
FUNCTION(check_apic_id)
    CHECK_ENTER
    mov     $APIC_ID, %edi
    call    lapic_read
    shr     $24, %eax
    mov     %eax, %r12d                 /* ID register bits 31:24 */
    mov     $1, %eax
    cpuid
    shr     $24, %ebx
    EXPECT_EQ %r12d, %ebx, "ID register (expected CPUID.1:EBX[31:24])"
    mov     boot_info(%rip), %rax
    mov     BI_BSP_APIC_ID(%rax), %eax
    EXPECT_EQ %r12d, %eax, "ID register (expected the boot-info BSP APIC ID)"
    mov     bsp_slot(%rip), %edi
    call    percpu_of
    mov     PC_APIC_ID(%rax), %eax
    EXPECT_EQ %r12d, %eax, "ID register (expected the MP table entry)"
    xor     %eax, %eax
    cpuid
    cmp     $0xb, %eax
    jb      1f
    mov     $0xb, %eax
    xor     %ecx, %ecx
    cpuid
    EXPECT_EQ %r12d, %edx, "ID register (expected the x2APIC ID in CPUID.0BH:EDX)"
1:  CHECK_PASS
END(check_apic_id)

/*
 * check_reset_state() -> %eax: RESULT_*. Compares every online CPU's
 * reset snapshot (taken by cpu_enter) with reset_regs.
 */
FUNCTION(check_reset_state)
    CHECK_ENTER
    xor     %ebx, %ebx                  /* slot */
1:  ONLINE_SLOT %ebx, 5f, 4f
    mov     %ebx, fail_cpu(%rip)
    mov     %ebx, %edi
    call    percpu_of
    mov     %rax, %r12                  /* its block */
    mov     PC_RESET + 4 * (RESET_REGS - 1)(%r12), %r15d
    shr     $16, %r15d
    and     $0xff, %r15d                /* its max LVT entry */
    lea     reset_regs(%rip), %r13
    xor     %r14d, %r14d
2:  cmp     reset_regs_count(%rip), %r14d
    jae     4f
    movzbl  2(%r13), %eax
    cmp     %eax, %r15d
    jb      3f                          /* register not implemented */
    mov     PC_RESET(%r12,%r14,4), %edx
    and     4(%r13), %edx
    mov     8(%r13), %esi
    cmp     %esi, %edx
    je      3f
    mov     16(%r13), %rdi
    lea     rel_eq(%rip), %rcx
    jmp     check_fail_cmp
3:  add     $24, %r13
    inc     %r14d
    jmp     2b
4:  inc     %ebx
    jmp     1b
5:  movl    $-1, fail_cpu(%rip)
    CHECK_PASS
END(check_reset_state)

/* check_readonly_registers() -> %eax: RESULT_*. */
FUNCTION(check_readonly_registers)
    CHECK_ENTER
    cli
    mov     $APIC_TPR, %edi
    mov     $0x20, %esi
    call    lapic_write
    mov     $APIC_VERSION, %edi
    call    lapic_read
    mov     %eax, %ebx
    mov     $APIC_VERSION, %edi
    mov     %ebx, %esi
    not     %esi
    call    lapic_write
    mov     $APIC_VERSION, %edi
    call    lapic_read
    EXPECT_EQ %eax, %ebx, "version register after writing its complement"
    mov     $APIC_PPR, %edi
    mov     $0xf0, %esi
    call    lapic_write
    mov     $APIC_PPR, %edi
    call    lapic_read
    EXPECT_EQ %eax, $0x20, "PPR after writing 0xf0 with TPR 0x20"
    lea     readonly_vector_regs(%rip), %r12
1:  movzwl  (%r12), %r13d               /* register offset, 0 ends the list */
    test    %r13d, %r13d
    jz      2f
    mov     %r13, fail_arg(%rip)
    mov     %r13d, %edi
    call    lapic_read
    mov     %eax, %ebx
    mov     %r13d, %edi
    mov     $0xffffffff, %esi
    call    lapic_write
    mov     %r13d, %edi
    call    lapic_read
    EXPECT_EQ %eax, %ebx, "ISR/TMR/IRR register after writing all ones, offset"
    add     $2, %r12
    jmp     1b
2:  movq    $-1, fail_arg(%rip)
    mov     $APIC_TIMER_CCR, %edi
    mov     $0x12345, %esi
    call    lapic_write
    mov     $APIC_TIMER_CCR, %edi
    call    lapic_read
    EXPECT_EQ %eax, $0, "current count after a write (timer stopped)"
    mov     $APIC_TPR, %edi
    xor     %esi, %esi
    call    lapic_write
    sti
    call    settle
    cli
    EXPECT_EQ %gs:PC_LOG_LEN, $0, "interrupts delivered after the writes"
    CHECK_PASS
END(check_readonly_registers)

/* check_tpr_cr8() -> %eax: RESULT_*. */
FUNCTION(check_tpr_cr8)
    CHECK_ENTER
    cli
    mov     $APIC_TPR, %edi
    mov     $0x5a, %esi
    call    lapic_write
    mov     %cr8, %rax
    EXPECT_EQ %eax, $5, "CR8 after TPR = 0x5a"
    mov     $3, %eax
    mov     %rax, %cr8
    mov     $APIC_TPR, %edi
    call    lapic_read
    EXPECT_EQ %eax, $0x30, "TPR after CR8 = 3"
    mov     $6, %eax
    mov     %rax, %cr8
    mov     $VEC_CR8, %edi
    call    ipi_self
    sti
    call    settle
    EXPECT_EQ COUNT(VEC_CR8), $0, "deliveries of 0x61 with CR8 = 6"
    mov     $5, %eax
    mov     %rax, %cr8
    WAIT_COUNT VEC_CR8, 1, "deliveries of 0x61 after CR8 = 5"
    cli
    xor     %eax, %eax
    mov     %rax, %cr8
    mov     $APIC_TPR, %edi
    call    lapic_read
    EXPECT_EQ %eax, $0, "TPR after CR8 = 0"
    CHECK_PASS
END(check_tpr_cr8)

/* check_tpr_masking() -> %eax: RESULT_*. */
FUNCTION(check_tpr_masking)
    CHECK_ENTER
    cli
    mov     $APIC_TPR, %edi
    mov     $0x50, %esi
    call    lapic_write
    sti
    mov     $VEC_TPR, %edi
    call    ipi_self
    call    settle
    EXPECT_EQ COUNT(VEC_TPR), $0, "deliveries of 0x45 with TPR 0x50"
    EXPECT_VECTOR_BIT APIC_IRR, VEC_TPR, 1, "IRR bit of 0x45 held back by TPR 0x50"
    mov     $APIC_PPR, %edi
    call    lapic_read
    EXPECT_EQ %eax, $0x50, "PPR with TPR 0x50 and nothing in service"
    mov     $APIC_TPR, %edi
    mov     $0x4f, %esi
    call    lapic_write
    call    settle
    EXPECT_EQ COUNT(VEC_TPR), $0, "deliveries of 0x45 with TPR 0x4f (same class)"
    mov     $APIC_TPR, %edi
    mov     $0x3f, %esi
    call    lapic_write
    WAIT_COUNT VEC_TPR, 1, "deliveries of 0x45 after TPR 0x3f"
    call    settle
    cli
    EXPECT_EQ COUNT(VEC_TPR), $1, "deliveries of 0x45"
    EXPECT_VECTOR_BIT APIC_IRR, VEC_TPR, 0, "IRR bit of 0x45 after delivery"
    CHECK_PASS
END(check_tpr_masking)

/*
 * ppr_hook(vector, count): runs with VEC_PPR in service: for each of
 * ppr_cases sets TPR and records PPR (hook_rec[0..4]), records the ISR bit
 * (hook_rec[5]), then TPR 0, EOI, and records PPR and the ISR bit again
 * (hook_rec[6], hook_rec[7]).
 */
FUNCTION(ppr_hook)
    push    %rbp
    mov     %rsp, %rbp
    push    %rbx
    push    %r12
    xor     %ebx, %ebx
    lea     hook_rec(%rip), %r12
1:  cmp     $PPR_CASES, %ebx
    jae     2f
    lea     ppr_cases(%rip), %rax
    mov     (%rax,%rbx,8), %esi
    mov     $APIC_TPR, %edi
    call    lapic_write
    mov     $APIC_PPR, %edi
    call    lapic_read
    mov     %eax, %eax
    mov     %rax, (%r12,%rbx,8)
    inc     %ebx
    jmp     1b
2:  mov     $APIC_ISR, %edi
    mov     $VEC_PPR, %esi
    call    lapic_vector_bit
    mov     %rax, 5 * 8(%r12)
    mov     $APIC_TPR, %edi
    xor     %esi, %esi
    call    lapic_write
    call    lapic_eoi
    mov     $APIC_PPR, %edi
    call    lapic_read
    mov     %eax, %eax
    mov     %rax, 6 * 8(%r12)
    mov     $APIC_ISR, %edi
    mov     $VEC_PPR, %esi
    call    lapic_vector_bit
    mov     %rax, 7 * 8(%r12)
    pop     %r12
    pop     %rbx
    pop     %rbp
    ret
END(ppr_hook)

/* check_ppr_rule() -> %eax: RESULT_*. */
FUNCTION(check_ppr_rule)
    CHECK_ENTER
    cli
    mov     $APIC_TPR, %edi
    mov     $0x45, %esi
    call    lapic_write
    mov     $APIC_PPR, %edi
    call    lapic_read
    EXPECT_EQ %eax, $0x45, "PPR with TPR 0x45 and nothing in service"
    mov     $APIC_TPR, %edi
    xor     %esi, %esi
    call    lapic_write
    mov     $VEC_PPR, %edi
    lea     ppr_hook(%rip), %rsi
    call    set_hook
    sti
    mov     $VEC_PPR, %edi
    call    ipi_self
    WAIT_COUNT VEC_PPR, 1, "deliveries of 0x65"
    cli
    xor     %ebx, %ebx
    lea     hook_rec(%rip), %r12
    lea     ppr_cases(%rip), %r13
    EXPECT_EQ 40(%r12), $1, "ISR bit of 0x65 inside its handler"
1:  cmp     $PPR_CASES, %ebx
    jae     2f
    mov     (%r13,%rbx,8), %eax
    mov     %rax, fail_arg(%rip)
    mov     4(%r13,%rbx,8), %r14d
    mov     (%r12,%rbx,8), %eax
    EXPECT_EQ %eax, %r14d, "PPR with 0x65 in service and TPR"
    inc     %ebx
    jmp     1b
2:  movq    $-1, fail_arg(%rip)
    EXPECT_EQ 48(%r12), $0, "PPR after EOI with TPR 0"
    EXPECT_EQ 56(%r12), $0, "ISR bit of 0x65 after EOI"
    CHECK_PASS
END(check_ppr_rule)

/* check_priority_order() -> %eax: RESULT_*. */
FUNCTION(check_priority_order)
    CHECK_ENTER
    cli
    mov     $VEC_ORDER_LOW, %edi
    call    ipi_self
    mov     $VEC_ORDER_HIGH, %edi
    call    ipi_self
    mov     $VEC_ORDER_MID, %edi
    call    ipi_self
    mov     $VEC_ORDER_LOW2, %edi
    call    ipi_self
    EXPECT_VECTOR_BIT APIC_IRR, VEC_ORDER_HIGH, 1, "IRR bit of 0x81 with IF=0"
    EXPECT_VECTOR_BIT APIC_IRR, VEC_ORDER_LOW, 1, "IRR bit of 0x41 with IF=0"
    EXPECT_EQ %gs:PC_LOG_LEN, $0, "deliveries with IF=0"
    sti
    mov     %gs:PC_SELF, %rdi
    add     $PC_LOG_LEN, %rdi
    mov     $4, %esi
    mov     $WAIT_TICKS, %edx
    call    wait_u32
    call    settle
    cli
    EXPECT_LOG order_expected, 4, "delivery order, log position"
    CHECK_PASS
END(check_priority_order)

/*
 * nested_low_hook(vector, count): handler of VEC_NEST_LOW: sends itself a
 * higher class, sets IF=1 and waits for it (it must preempt), then sends a
 * lower class and the same class, gives them time (they must not preempt),
 * logs MARK_NESTED_DONE, clears IF and EOIs.
 */
FUNCTION(nested_low_hook)
    push    %rbp
    mov     %rsp, %rbp
    mov     $VEC_NEST_HIGH, %edi
    call    ipi_self
    sti
    mov     %gs:PC_SELF, %rdi
    add     $(PC_COUNTS + 4 * VEC_NEST_HIGH), %rdi
    mov     $1, %esi
    mov     $WAIT_TICKS, %edx
    call    wait_u32
    mov     $VEC_NEST_LOWER, %edi
    call    ipi_self
    mov     $VEC_NEST_SAME, %edi
    call    ipi_self
    call    settle
    mov     $MARK_NESTED_DONE, %edi
    call    log_append
    cli
    call    lapic_eoi
    pop     %rbp
    ret
END(nested_low_hook)

/* check_nested_interrupts() -> %eax: RESULT_*. */
FUNCTION(check_nested_interrupts)
    CHECK_ENTER
    cli
    mov     $VEC_NEST_LOW, %edi
    lea     nested_low_hook(%rip), %rsi
    call    set_hook
    sti
    mov     $VEC_NEST_LOW, %edi
    call    ipi_self
    mov     %gs:PC_SELF, %rdi
    add     $PC_LOG_LEN, %rdi
    mov     $5, %esi
    mov     $WAIT_TICKS, %edx
    call    wait_u32
    call    settle
    cli
    EXPECT_LOG nested_expected, 5, "delivery log (0x51 handler with IF=1 gets 0x91 but not 0x5f or 0x31; 1 = handler done), position"
    CHECK_PASS
END(check_nested_interrupts)

/*
 * early_eoi_hook(vector, count): first run: EOI at once (IF=0), record the
 * ISR bit (hook_rec[0]) and IF (hook_rec[3]), send the same vector to self,
 * spin with IF=0, record this vector's count (hook_rec[1]) and IRR bit
 * (hook_rec[2]), log MARK_EARLY_EOI_DONE and return without another EOI.
 * Later runs: EOI.
 */
FUNCTION(early_eoi_hook)
    push    %rbp
    mov     %rsp, %rbp
    push    %rbx
    lea     hook_rec(%rip), %rbx
    cmp     $1, %esi
    jne     1f
    call    lapic_eoi
    mov     $APIC_ISR, %edi
    mov     $VEC_EARLY_EOI, %esi
    call    lapic_vector_bit
    mov     %rax, 0(%rbx)
    pushf
    pop     %rax
    and     $0x200, %eax
    mov     %rax, 3 * 8(%rbx)
    mov     $VEC_EARLY_EOI, %edi
    call    ipi_self
    call    settle
    mov     COUNT(VEC_EARLY_EOI), %eax
    mov     %rax, 1 * 8(%rbx)
    mov     $APIC_IRR, %edi
    mov     $VEC_EARLY_EOI, %esi
    call    lapic_vector_bit
    mov     %rax, 2 * 8(%rbx)
    mov     $MARK_EARLY_EOI_DONE, %edi
    call    log_append
    jmp     2f
1:  call    lapic_eoi
2:  pop     %rbx
    pop     %rbp
    ret
END(early_eoi_hook)

/* check_early_eoi() -> %eax: RESULT_*. */
FUNCTION(check_early_eoi)
    CHECK_ENTER
    cli
    mov     $VEC_EARLY_EOI, %edi
    lea     early_eoi_hook(%rip), %rsi
    call    set_hook
    sti
    mov     $VEC_EARLY_EOI, %edi
    call    ipi_self
    WAIT_COUNT VEC_EARLY_EOI, 2, "deliveries of 0x71 (the one sent inside the handler after an early EOI)"
    call    settle
    cli
    lea     hook_rec(%rip), %rbx
    EXPECT_EQ 0(%rbx), $0, "ISR bit of 0x71 right after the early EOI"
    EXPECT_EQ 24(%rbx), $0, "RFLAGS.IF in the handler"
    EXPECT_EQ 8(%rbx), $1, "deliveries of 0x71 while the handler spun with IF=0 after EOI"
    EXPECT_EQ 16(%rbx), $1, "IRR bit of the 0x71 sent inside the handler (pending)"
    EXPECT_EQ COUNT(VEC_EARLY_EOI), $2, "deliveries of 0x71 (the pending one exactly once after iretq)"
    EXPECT_LOG early_eoi_expected, 3, "delivery log (2 = first handler returning), position"
    EXPECT_VECTOR_BIT APIC_IRR, VEC_EARLY_EOI, 0, "IRR bit of 0x71 at the end"
    CHECK_PASS
END(check_early_eoi)

/* check_self_ipi() -> %eax: RESULT_*. */
FUNCTION(check_self_ipi)
    CHECK_ENTER
    sti
    mov     $VEC_SELF, %edi
    call    ipi_self
    EXPECT_EQ %eax, $0, "ICR delivery status after a self IPI (1: stayed busy)"
    mov     $APIC_ICR_LO, %edi
    call    lapic_read
    and     $~ICR_BUSY, %eax
    EXPECT_EQ %eax, $(ICR_SELF | VEC_SELF), "ICR low read back"
    mov     bsp_slot(%rip), %ecx
    mov     $1, %r12d
    shl     %cl, %r12d
    EXPECT_DELIVERY VEC_SELF, %r12d, "deliveries of 0x52 sent with the self shorthand"
    mov     bsp_apic_id(%rip), %edi
    mov     $VEC_READONLY, %esi
    call    ipi_send
    EXPECT_EQ %eax, $0, "ICR delivery status after an IPI to the own ID (1: stayed busy)"
    EXPECT_DELIVERY VEC_READONLY, %r12d, "deliveries of 0x53 sent to the own APIC ID"
    cli
    CHECK_PASS
END(check_self_ipi)

/* check_esr_illegal_vector() -> %eax: RESULT_*. */
FUNCTION(check_esr_illegal_vector)
    CHECK_ENTER
    cli
    mov     $APIC_ESR, %edi
    xor     %esi, %esi
    call    lapic_write
    mov     $APIC_ESR, %edi
    xor     %esi, %esi
    call    lapic_write
    mov     $APIC_ESR, %edi
    call    lapic_read
    EXPECT_EQ %eax, $0, "ESR after two writes"
    mov     $APIC_LVT_ERROR, %edi
    mov     $VEC_LVT_ERROR, %esi
    call    lapic_write
    movl    $1, %gs:PC_STRAY_OK
    mov     $(ICR_SELF | VEC_ILLEGAL), %esi
    xor     %edi, %edi
    call    ipi_send
    sti
    WAIT_COUNT VEC_LVT_ERROR, 1, "error interrupts through LVT error (0xe9)"
    call    settle
    cli
    mov     $APIC_ESR, %edi
    call    lapic_read
    EXPECT_EQ %eax, $0, "ESR read before the latching write"
    mov     $APIC_ESR, %edi
    xor     %esi, %esi
    call    lapic_write
    mov     $APIC_ESR, %edi
    call    lapic_read
    and     $ESR_SEND_ILLEGAL, %eax
    EXPECT_EQ %eax, $ESR_SEND_ILLEGAL, "ESR bit 5 (send illegal vector) after a self IPI with vector 5 and the latching write"
    mov     $APIC_ESR, %edi
    xor     %esi, %esi
    call    lapic_write
    mov     $APIC_ESR, %edi
    call    lapic_read
    EXPECT_EQ %eax, $0, "ESR after the next write"
    EXPECT_EQ COUNT(VEC_ILLEGAL), $0, "deliveries of the illegal vector 5"
    EXPECT_GE COUNT(VEC_LVT_ERROR), $1, "error interrupts through LVT error (0xe9)"
    CHECK_PASS
END(check_esr_illegal_vector)

    .section .rodata
    .p2align 3
/*
 * Registers checked by reset_state: u16 offset, u8 minimum max-LVT entry for
 * the register to exist, u8 0, u32 mask, u32 expected value, u32 0, name.
 */
OBJECT(reset_regs)
    .word APIC_TPR;         .byte 0, 0; .long 0xff, 0, 0;              .quad rn_tpr
    .word APIC_PPR;         .byte 0, 0; .long 0xff, 0, 0;              .quad rn_ppr
    .word APIC_LDR;         .byte 0, 0; .long 0xff000000, 0, 0;        .quad rn_ldr
    .word APIC_DFR;         .byte 0, 0; .long 0xffffffff, 0xffffffff, 0; .quad rn_dfr
    .word APIC_SVR;         .byte 0, 0; .long 0x13ff, 0xff, 0;         .quad rn_svr
    .word APIC_LVT_TIMER;   .byte 0, 0; .long 0xffffffff, LVT_MASKED, 0; .quad rn_lvt_timer
    .word APIC_LVT_THERMAL; .byte 5, 0; .long 0xffffffff, LVT_MASKED, 0; .quad rn_lvt_thermal
    .word APIC_LVT_PERF;    .byte 4, 0; .long 0xffffffff, LVT_MASKED, 0; .quad rn_lvt_perf
    .word APIC_LVT_LINT0;   .byte 0, 0; .long 0xffffffff, LVT_MASKED, 0; .quad rn_lvt_lint0
    .word APIC_LVT_LINT1;   .byte 0, 0; .long 0xffffffff, LVT_MASKED, 0; .quad rn_lvt_lint1
    .word APIC_LVT_ERROR;   .byte 0, 0; .long 0xffffffff, LVT_MASKED, 0; .quad rn_lvt_error
    .word APIC_LVT_CMCI;    .byte 6, 0; .long 0xffffffff, LVT_MASKED, 0; .quad rn_lvt_cmci
    .word APIC_TIMER_ICR;   .byte 0, 0; .long 0xffffffff, 0, 0;        .quad rn_timer_icr
    .word APIC_TIMER_CCR;   .byte 0, 0; .long 0xffffffff, 0, 0;        .quad rn_timer_ccr
    .word APIC_TIMER_DCR;   .byte 0, 0; .long 0xb, 0, 0;               .quad rn_timer_dcr
END(reset_regs)
OBJECT(reset_regs_count)
    .long (reset_regs_count - reset_regs) / 24
END(reset_regs_count)

/* ISR, TMR and IRR registers readonly_registers writes (0 ends the list). */
readonly_vector_regs:
    .word APIC_ISR + 0x10, APIC_ISR + 0x70, APIC_TMR + 0x10, APIC_IRR + 0x10, APIC_IRR + 0x70, 0

    .p2align 3
/* ppr_rule: TPR written while 0x65 is in service, PPR expected. */
ppr_cases:
    .long 0x32, 0x60
    .long 0x63, 0x63
    .long 0x7a, 0x7a
    .long 0x60, 0x60
    .long 0x5f, 0x60

order_expected:
    .byte VEC_ORDER_HIGH, VEC_ORDER_MID, VEC_ORDER_LOW2, VEC_ORDER_LOW
nested_expected:
    .byte VEC_NEST_LOW, VEC_NEST_HIGH, MARK_NESTED_DONE, VEC_NEST_SAME, VEC_NEST_LOWER
early_eoi_expected:
    .byte VEC_EARLY_EOI, MARK_EARLY_EOI_DONE, VEC_EARLY_EOI

rn_tpr:         .asciz "TPR (0x80) at reset"
rn_ppr:         .asciz "PPR (0xa0) at reset"
rn_ldr:         .asciz "LDR (0xd0) at reset"
rn_dfr:         .asciz "DFR (0xe0) at reset"
rn_svr:         .asciz "SVR (0xf0) at reset"
rn_lvt_timer:   .asciz "LVT timer (0x320) at reset"
rn_lvt_thermal: .asciz "LVT thermal (0x330) at reset"
rn_lvt_perf:    .asciz "LVT performance counter (0x340) at reset"
rn_lvt_lint0:   .asciz "LVT LINT0 (0x350) at reset"
rn_lvt_lint1:   .asciz "LVT LINT1 (0x360) at reset"
rn_lvt_error:   .asciz "LVT error (0x370) at reset"
rn_lvt_cmci:    .asciz "LVT CMCI (0x2f0) at reset"
rn_timer_icr:   .asciz "timer initial count (0x380) at reset"
rn_timer_ccr:   .asciz "timer current count (0x390) at reset"
rn_timer_dcr:   .asciz "timer divide configuration (0x3e0) at reset"
