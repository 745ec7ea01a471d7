/*
 * apic_conf_timer.S: `apic-conformance` checks of the local APIC timer
 * (SDM 10.5.4). Counts are small so each check takes a few milliseconds at
 * a 1 GHz APIC timer clock (KVM's); every wait is bounded by the TSC.
 *
 * timer_oneshot       Divide configuration reads back; in one-shot mode
 *                     (LVT timer bits 18:17 = 00) writing the initial count
 *                     starts the count-down: the current count is at most
 *                     the initial count, nonzero, and decreases between two
 *                     reads (checked with a count seconds long, so a
 *                     preempted vCPU cannot see it expire); writing a short
 *                     initial count restarts it: one interrupt arrives, the
 *                     count then stays 0 and no second interrupt comes, even
 *                     after waiting as long again (SDM 10.5.4).
 * timer_periodic      In periodic mode (01) the current count reloads from
 *                     the initial count and interrupts keep coming; writing
 *                     0 to the initial count stops the timer (SDM 10.5.4).
 * timer_tsc_deadline  Only if CPUID.1:ECX[24]. In TSC-deadline mode (10)
 *                     writes to the initial count are ignored and the
 *                     current count reads 0; writing IA32_TSC_DEADLINE
 *                     (MSR 0x6E0) arms the timer (a deadline minutes ahead
 *                     reads back), which fires once the TSC reaches the
 *                     deadline (not before) and then reads 0; a deadline in
 *                     the past fires at once; writing 0 disarms (SDM
 *                     10.5.4.1). Where the vCPU was demonstrably preempted
 *                     past a deadline it meant to disarm, that part is not
 *                     judged.
 */
#include "apic_conformance.h"

/* Longest "as long again" wait after a one-shot expiry or for a stopped timer. */
#define TIMER_QUIET_MAX 200000000

    .text
    .code64

/* quiet_ticks(elapsed = %rdi) -> %rax: elapsed, at least SETTLE_TICKS, at most TIMER_QUIET_MAX. */
FUNCTION(quiet_ticks)
    push    %rbp
    mov     %rsp, %rbp
    mov     %rdi, %rax
    cmp     $SETTLE_TICKS, %rax
    jae     1f
    mov     $SETTLE_TICKS, %eax
1:  cmp     $TIMER_QUIET_MAX, %rax
    jbe     2f
    mov     $TIMER_QUIET_MAX, %eax
2:  pop     %rbp
    ret
END(quiet_ticks)

/* check_timer_oneshot() -> %eax: RESULT_*. */
FUNCTION(check_timer_oneshot)
    CHECK_ENTER
    cli
    mov     $APIC_TIMER_DCR, %edi
    mov     $DCR_DIV16, %esi
    call    lapic_write
    mov     $APIC_TIMER_DCR, %edi
    call    lapic_read
    and     $0xb, %eax
    EXPECT_EQ %eax, $DCR_DIV16, "divide configuration read back"
    mov     $APIC_LVT_TIMER, %edi
    mov     $VEC_TIMER_ONESHOT, %esi
    call    lapic_write
    mov     $APIC_LVT_TIMER, %edi
    call    lapic_read
    and     $~ICR_BUSY, %eax            /* bit 12: delivery status */
    EXPECT_EQ %eax, $VEC_TIMER_ONESHOT, "LVT timer read back (one-shot)"
    mov     $APIC_TIMER_ICR, %edi       /* count-down: seconds long, cannot expire here */
    mov     $TIMER_LONG_COUNT, %esi
    call    lapic_write
    mov     $APIC_TIMER_CCR, %edi
    call    lapic_read
    mov     %eax, %r12d
    mov     $APIC_TIMER_CCR, %edi
    call    lapic_read
    mov     %eax, %r13d
    mov     $APIC_TIMER_ICR, %edi
    call    lapic_read
    EXPECT_EQ %eax, $TIMER_LONG_COUNT, "initial count read back"
    EXPECT_LE %r12d, $TIMER_LONG_COUNT, "current count right after the start"
    EXPECT_NZ %r12d, "current count right after the start"
    EXPECT_LT %r13d, %r12d, "second current count read (must decrease)"
    EXPECT_EQ COUNT(VEC_TIMER_ONESHOT), $0, "one-shot timer interrupts before expiry"
    call    tsc_now
    mov     %rax, %r15                  /* start of the short one-shot */
    mov     $APIC_TIMER_ICR, %edi       /* a new initial count restarts the timer */
    mov     $TIMER_ONESHOT_COUNT, %esi
    call    lapic_write
    sti
    WAIT_COUNT VEC_TIMER_ONESHOT, 1, "one-shot timer interrupts"
    mov     %gs:PC_LAST_TSC, %rdi
    sub     %r15, %rdi
    call    quiet_ticks
    mov     %rax, %rdi
    call    spin_ticks                  /* as long again: no second expiry */
    cli
    EXPECT_EQ COUNT(VEC_TIMER_ONESHOT), $1, "one-shot timer interrupts after waiting as long again"
    mov     $APIC_TIMER_CCR, %edi
    call    lapic_read
    EXPECT_EQ %eax, $0, "current count after expiry"
    CHECK_PASS
END(check_timer_oneshot)

/* check_timer_periodic() -> %eax: RESULT_*. */
FUNCTION(check_timer_periodic)
    CHECK_ENTER
    cli
    mov     $APIC_TIMER_DCR, %edi
    mov     $DCR_DIV1, %esi
    call    lapic_write
    mov     $APIC_LVT_TIMER, %edi
    mov     $(LVT_TIMER_PERIODIC | VEC_TIMER_PERIODIC), %esi
    call    lapic_write
    mov     $APIC_LVT_TIMER, %edi
    call    lapic_read
    and     $~ICR_BUSY, %eax
    EXPECT_EQ %eax, $(LVT_TIMER_PERIODIC | VEC_TIMER_PERIODIC), "LVT timer read back (periodic)"
    call    tsc_now
    mov     %rax, %r15
    mov     $APIC_TIMER_ICR, %edi
    mov     $TIMER_PERIOD_COUNT, %esi
    call    lapic_write
    sti
    WAIT_COUNT VEC_TIMER_PERIODIC, TIMER_PERIODS, "periodic timer interrupts"
    mov     %gs:PC_LAST_TSC, %r14
    sub     %r15, %r14                  /* ticks for TIMER_PERIODS periods */
    mov     $APIC_TIMER_CCR, %edi
    call    lapic_read
    EXPECT_LE %eax, $TIMER_PERIOD_COUNT, "current count after some periods"
    cli
    mov     $APIC_TIMER_ICR, %edi
    xor     %esi, %esi
    call    lapic_write                 /* stops the timer */
    mov     COUNT(VEC_TIMER_PERIODIC), %r12d
    sti                                 /* one may have been pending already */
    call    settle
    cli
    mov     COUNT(VEC_TIMER_PERIODIC), %r13d
    inc     %r12d
    EXPECT_LE %r13d, %r12d, "periodic timer interrupts just after writing initial count 0"
    mov     %r14, %rdi
    call    quiet_ticks
    mov     %rax, %rdi
    sti
    call    spin_ticks                  /* as long as the periods took */
    cli
    EXPECT_EQ COUNT(VEC_TIMER_PERIODIC), %r13d, "periodic timer interrupts after it was stopped"
    mov     $APIC_TIMER_CCR, %edi
    call    lapic_read
    EXPECT_EQ %eax, $0, "current count after writing initial count 0"
    CHECK_PASS
END(check_timer_periodic)

/* check_timer_tsc_deadline() -> %eax: RESULT_*. */
FUNCTION(check_timer_tsc_deadline)
    CHECK_ENTER
    testl   $CPUID1_ECX_TSC_DL, cpuid1_ecx(%rip)
    jnz     1f
    SKIP_MSG "CPUID.1:ECX[24] (TSC-deadline timer) is clear"
1:  cli
    mov     $APIC_LVT_TIMER, %edi
    mov     $(LVT_TIMER_TSC_DL | VEC_TIMER_DEADLINE), %esi
    call    lapic_write
    mov     $APIC_LVT_TIMER, %edi
    call    lapic_read
    and     $~ICR_BUSY, %eax
    EXPECT_EQ %eax, $(LVT_TIMER_TSC_DL | VEC_TIMER_DEADLINE), "LVT timer read back (TSC-deadline)"
    mov     $APIC_TIMER_ICR, %edi
    mov     $0x12345, %esi
    call    lapic_write
    mov     $APIC_TIMER_CCR, %edi
    call    lapic_read
    EXPECT_EQ %eax, $0, "current count in TSC-deadline mode after an initial-count write"
    call    tsc_now
    mov     $TSC_FAR_AHEAD, %r12
    add     %rax, %r12                  /* minutes away: stays armed while read back */
    mov     $MSR_TSC_DEADLINE, %edi
    mov     %r12, %rsi
    call    msr_write
    mov     $MSR_TSC_DEADLINE, %edi
    call    msr_read
    EXPECT_EQ64 %rax, %r12, "IA32_TSC_DEADLINE read back while armed"
    sti
    call    tsc_now
    lea     DEADLINE_TICKS(%rax), %r12  /* the deadline that fires */
    mov     $MSR_TSC_DEADLINE, %edi
    mov     %r12, %rsi
    call    msr_write
    WAIT_COUNT VEC_TIMER_DEADLINE, 1, "TSC-deadline interrupts"
    EXPECT_GE64 %gs:PC_LAST_TSC, %r12, "TSC when the deadline interrupt arrived"
    mov     $MSR_TSC_DEADLINE, %edi
    call    msr_read
    EXPECT_EQ64 %rax, $0, "IA32_TSC_DEADLINE after it fired"
    call    settle
    EXPECT_EQ COUNT(VEC_TIMER_DEADLINE), $1, "TSC-deadline interrupts after it fired"
    mov     $MSR_TSC_DEADLINE, %edi
    mov     $1, %esi
    call    msr_write
    WAIT_COUNT VEC_TIMER_DEADLINE, 2, "TSC-deadline interrupts after arming a deadline in the past"
    call    tsc_now
    lea     DEADLINE_TICKS(%rax), %r12
    mov     $MSR_TSC_DEADLINE, %edi
    mov     %r12, %rsi
    call    msr_write
    mov     $MSR_TSC_DEADLINE, %edi
    xor     %esi, %esi
    call    msr_write                   /* disarm */
    call    tsc_now
    mov     %rax, %r13                  /* when the disarm was done */
    mov     $(2 * DEADLINE_TICKS), %edi
    call    spin_ticks
    call    settle
    cli
    cmp     %r12, %r13
    jae     2f                          /* preempted past the deadline: it may have fired */
    EXPECT_EQ COUNT(VEC_TIMER_DEADLINE), $2, "TSC-deadline interrupts after disarming with 0"
2:  CHECK_PASS
END(check_timer_tsc_deadline)
