/*
 * ipi_bench.S: the `ipi-bench` guest, interrupt-delivery benchmarks for 2+ vCPUs.
 *
 * The BSP starts the first AP (APIC ID 1) with INIT-SIPI-SIPI (aps.S,
 * trampoline.S); the AP loads the shared IDT (idt.S) and idles in `sti; hlt`.
 * Then:
 *
 *   ipi_roundtrip  BSP (halted between sends): read TSC, send fixed IPI
 *                  VEC_PING to the AP through the xAPIC ICR, `sti; hlt` until
 *                  the AP's handler has sent VEC_PONG back and the BSP's
 *                  handler ran, read TSC. Sample = TSC delta.
 *   irq_latency    BSP stores the TSC in irq_t0, then makes an edge on IOAPIC
 *                  pin IRQ_PIN with the IRQ test device (out 1, out 0 to port
 *                  0x2000 + pin); the redirection entry is edge, fixed,
 *                  physical, destination APIC ID 1, VEC_IRQ. The AP, halted,
 *                  takes it: its handler reads the TSC, stores the delta,
 *                  EOIs and wakes the BSP with VEC_PONG (outside the sample).
 *
 * Each runs WARMUP unrecorded rounds, then `iters` recorded ones. The samples
 * are sorted in place (stats.S) and reported in TSC ticks and, from the
 * boot info's tsc_khz, in nanoseconds (nearest-rank median and p99):
 *
 *   ipi-bench: ipi_roundtrip_ns median=12345 p99=23456 min=1000 n=200
 *   ipi-bench: irq_latency_ns median=... p99=... min=... n=200
 *
 * Command line (boot info): `iters=N` (1..MAX_ITERS, default 200); `irq=0`
 * skips irq_latency (prints `ipi-bench: irq_latency_ns skipped`), for
 * `--irqchip split`, whose IOAPIC is not emulated yet. Unknown words are
 * ignored.
 *
 * Every wait is bounded: AP start-up by the TSC (wait_for_online), halted
 * waits by a periodic LAPIC-timer watchdog on the BSP that fails the run when
 * a whole period (~0.5 s) passes without a completed round. Failures print
 * `ipi-bench: FAIL ...` and exit non-zero (see IB_EXIT_*); an unexpected
 * exception or interrupt on either CPU does too. The timed code is kept short:
 * at CPL0 on a software-KVM host every instruction is interpreted (~1 us).
 * Interrupts are enabled only inside `sti; hlt`, so handlers run only there.
 */
#include "common.h"

/* Exit statuses (EXIT_OK, EXIT_BAD_BOOT_INFO = 2 and EXIT_IPI_TIMEOUT = 4 from common.h). */
#define IB_EXIT_BAD_OPTION  3           /* iters= out of range */
#define IB_EXIT_ONE_CPU     6           /* fewer than 2 vCPUs */
#define IB_EXIT_AP_OFFLINE  7           /* APIC ID 1 did not come online */
#define IB_EXIT_TIMEOUT     8           /* a round did not complete within the watchdog */
#define IB_EXIT_UNEXPECTED  9           /* unexpected exception or interrupt */

/* Benchmark shape. */
#define AP_APIC_ID          1
#define DEFAULT_ITERS       200
#define MAX_ITERS           10000
#define WARMUP              10

/* Vectors. */
#define VEC_WATCHDOG        0x30        /* BSP: periodic LAPIC timer */
#define VEC_PING            0x40        /* BSP -> AP */
#define VEC_PONG            0x41        /* AP -> BSP: round trip done / IRQ taken */
#define VEC_IRQ             0x50        /* IOAPIC pin IRQ_PIN -> AP */

/* Local APIC registers not in common.h. */
#define LAPIC_EOI           0xb0
#define LAPIC_LVT_TIMER     0x320
#define LAPIC_TIMER_ICR     0x380
#define LAPIC_TIMER_DCR     0x3e0
#define LVT_MASKED          0x10000
#define LVT_PERIODIC        0x20000
#define DCR_DIV16           0x3
#define WATCHDOG_COUNT      0x2000000   /* x16: ~0.54 s at a 1 GHz APIC bus */

/* IOAPIC and IRQ test device. */
#define IOAPIC_BASE         0xfec00000
#define IOAPIC_REGSEL       0x00
#define IOAPIC_WIN          0x10
#define IRQ_PIN             16          /* IOAPIC-only (no 8259 behind it) */
#define REDIR_LO            (0x10 + 2 * IRQ_PIN)
#define REDIR_HI            (REDIR_LO + 1)
#define REDIR_MASKED        0x10000
#define TESTDEV_PORT        (0x2000 + IRQ_PIN)

/*
 * WAIT_WAKE timeout: entered with IF = 0; `sti; hlt` until a VEC_PONG handler
 * has set wake_flag (falls through, IF = 0), or jumps to `timeout` once the
 * watchdog has expired. STI's one-instruction shadow closes the window
 * between the check and the HLT.
 */
.macro WAIT_WAKE timeout
71: cmpl    $0, wake_flag(%rip)
    jne     72f
    cmpl    $0, watchdog_expired(%rip)
    jne     \timeout
    sti
    hlt
    cli
    jmp     71b
72:
.endm

/* FAILED what, status: print_fail(what), then guest_main returns status. */
.macro FAILED what:req, status:req
    lea     \what(%rip), %rdi
    mov     $\status, %r12d
    jmp     8f
.endm

/*
 * ROUNDS_START samples: a benchmark's round loop keeps the next sample slot
 * in %r12 (from samples), the rounds left in %r13d (WARMUP + iters) and the
 * warm-up rounds left to discard in %r14d.
 */
.macro ROUNDS_START samples:req
    lea     \samples(%rip), %r12
    mov     iters(%rip), %r13d
    add     $WARMUP, %r13d
    mov     $WARMUP, %r14d
.endm

/*
 * ROUND_DONE: ends a round whose sample is in %rax: counts it in progress
 * (for the watchdog), stores the sample unless the round is a warm-up one,
 * and loops back to 1b while rounds are left.
 */
.macro ROUND_DONE
    incl    progress(%rip)
    test    %r14d, %r14d
    jz      73f
    dec     %r14d
    jmp     74f
73: mov     %rax, (%r12)
    add     $8, %r12
74: dec     %r13d
    jnz     1b
.endm

    .text
    .code64

/* guest_main(boot_info = %rdi) -> %eax: exit status. */
FUNCTION(guest_main)
    push    %rbp
    mov     %rsp, %rbp
    push    %rbx
    push    %r12
    mov     %rdi, %rbx
    cmpl    $BOOT_INFO_MAGIC, BI_MAGIC(%rbx)
    jne     .Lbad_boot_info
    mov     BI_TSC_KHZ(%rbx), %eax
    mov     %eax, tsc_khz(%rip)
    mov     %rbx, %rdi
    call    parse_cmdline
    test    %eax, %eax
    jnz     .Lbad_option
    call    print_header
    cmpl    $2, BI_CPU_COUNT(%rbx)
    jb      .Lone_cpu
    call    pic_mask
    call    idt_init
    lidt    idt_ptr(%rip)               /* idt.S */
    call    lapic_enable
    call    lapic_id
    mov     %eax, bsp_apic_id(%rip)
    call    start_bench_ap
    test    %eax, %eax
    jnz     .Lap_offline
    mov     $LAPIC_BASE, %edx           /* every BSP IPI from here goes to the AP */
    movl    $(AP_APIC_ID << 24), LAPIC_ICR_HI(%rdx)
    call    watchdog_start
    call    bench_ipi_roundtrip
    test    %eax, %eax
    jnz     .Ltimeout_ipi
    cmpl    $0, irq_enabled(%rip)
    je      1f
    call    bench_irq_latency
    test    %eax, %eax
    jnz     .Ltimeout_irq
1:  call    watchdog_stop
    lea     name_ipi(%rip), %rdi
    lea     rt_samples(%rip), %rsi
    call    report
    cmpl    $0, irq_enabled(%rip)
    je      2f
    lea     name_irq(%rip), %rdi
    lea     irq_samples(%rip), %rsi
    call    report
    jmp     3f
2:  lea     msg_irq_skipped(%rip), %rdi
    call    serial_puts
3:  mov     $EXIT_OK, %eax
    jmp     9f
.Lbad_boot_info:
    FAILED  msg_bad_boot_info, EXIT_BAD_BOOT_INFO
.Lbad_option:
    FAILED  msg_bad_option, IB_EXIT_BAD_OPTION
.Lone_cpu:
    FAILED  msg_one_cpu, IB_EXIT_ONE_CPU
.Lap_offline:
    cmp     $EXIT_IPI_TIMEOUT, %eax
    je      4f
    FAILED  msg_ap_offline, IB_EXIT_AP_OFFLINE
4:  FAILED  msg_icr_busy, EXIT_IPI_TIMEOUT
.Ltimeout_ipi:
    FAILED  msg_timeout_ipi, IB_EXIT_TIMEOUT
.Ltimeout_irq:
    FAILED  msg_timeout_irq, IB_EXIT_TIMEOUT
8:  call    print_fail
    mov     %r12d, %eax
9:  lidt    no_idt_ptr(%rip)            /* see exit_quietly */
    pop     %r12
    pop     %rbx
    pop     %rbp
    ret
END(guest_main)

/*
 * parse_cmdline(boot_info = %rdi) -> %eax: 0, or 1 if `iters=` is out of
 * range. Sets iters and irq_enabled from the words `iters=N` and `irq=N`.
 */
FUNCTION(parse_cmdline)
    push    %rbp
    mov     %rsp, %rbp
    push    %rbx
    push    %r12
    mov     BI_CMDLINE_ADDR(%rdi), %rbx /* cursor */
    mov     BI_CMDLINE_LEN(%rdi), %r12
    add     %rbx, %r12                  /* end */
1:  cmp     %r12, %rbx                  /* skip spaces */
    jae     8f
    cmpb    $' ', (%rbx)
    jne     2f
    inc     %rbx
    jmp     1b
2:  mov     %rbx, %rdi
    mov     %r12, %rsi
    lea     opt_iters(%rip), %rdx
    call    match_word
    test    %rax, %rax
    jz      3f
    mov     %rax, %rdi
    mov     %r12, %rsi
    call    parse_uint
    mov     %rdx, %rbx
    test    %rax, %rax
    jz      9f
    cmp     $MAX_ITERS, %rax
    ja      9f
    mov     %eax, iters(%rip)
    jmp     5f
3:  mov     %rbx, %rdi
    mov     %r12, %rsi
    lea     opt_irq(%rip), %rdx
    call    match_word
    test    %rax, %rax
    jz      5f
    mov     %rax, %rdi
    mov     %r12, %rsi
    call    parse_uint
    mov     %rdx, %rbx
    test    %rax, %rax
    setnz   %al
    movzbl  %al, %eax
    mov     %eax, irq_enabled(%rip)
5:  cmp     %r12, %rbx                  /* skip the rest of the word */
    jae     8f
    cmpb    $' ', (%rbx)
    je      1b
    inc     %rbx
    jmp     5b
8:  xor     %eax, %eax
    jmp     10f
9:  mov     $1, %eax
10: pop     %r12
    pop     %rbx
    pop     %rbp
    ret
END(parse_cmdline)

/* print_header(): "ipi-bench: tsc_khz=K iters=N warmup=W irq=0|1". */
FUNCTION(print_header)
    push    %rbp
    mov     %rsp, %rbp
    PUTS    msg_hdr_khz
    PUTDEC32 tsc_khz(%rip)
    PUTS    msg_hdr_iters
    PUTDEC32 iters(%rip)
    PUTS    msg_hdr_warmup
    PUTDEC32 $WARMUP
    PUTS    msg_hdr_irq
    PUTDEC32 irq_enabled(%rip)
    PUTS    msg_newline
    pop     %rbp
    ret
END(print_header)

/* print_fail(what = %rdi): "ipi-bench: FAIL <what>" under the serial lock. */
FUNCTION(print_fail)
    push    %rbp
    mov     %rsp, %rbp
    push    %rbx
    push    %rbx                        /* keeps %rsp 16-byte aligned */
    mov     %rdi, %rbx
    call    serial_lock
    lea     msg_fail(%rip), %rdi
    call    serial_puts
    mov     %rbx, %rdi
    call    serial_puts
    call    serial_unlock
    pop     %rbx
    pop     %rbx
    pop     %rbp
    ret
END(print_fail)

/* idt_init(): the IDT shared by both CPUs: the defaults and bench_gates (idt.S). */
FUNCTION(idt_init)
    push    %rbp
    mov     %rsp, %rbp
    lea     bench_gates(%rip), %rdi
    call    idt_init_gates
    pop     %rbp
    ret
END(idt_init)

/*
 * start_bench_ap() -> %eax: starts APIC ID 1 with INIT-SIPI-SIPI (aps.S,
 * trampoline.S, which calls ap_main) and waits for it to check in.
 * 0 = online, 1 = timed out, EXIT_IPI_TIMEOUT = an IPI stayed undelivered.
 */
FUNCTION(start_bench_ap)
    push    %rbp
    mov     %rsp, %rbp
    call    prepare_trampoline
    mov     $AP_APIC_ID, %edi
    lea     ap_stack_top(%rip), %rsi
    call    start_ap
    pop     %rbp
    ret
END(start_bench_ap)

/*
 * ap_main(): the AP's 64-bit entry (called by trampoline.S): loads the IDT,
 * enables its APIC, aims its ICR at the BSP, checks in, then serves
 * interrupts in `sti; hlt` for good.
 */
FUNCTION(ap_main)
    push    %rbp
    mov     %rsp, %rbp
    lidt    idt_ptr(%rip)
    call    lapic_enable
    mov     $LAPIC_BASE, %edx           /* every AP IPI goes to the BSP */
    mov     bsp_apic_id(%rip), %eax
    shl     $24, %eax
    mov     %eax, LAPIC_ICR_HI(%rdx)
    lock incl cpus_online(%rip)
    call    ap_serve
END(ap_main)

/* ap_serve(): halts with interrupts enabled; the handlers do the work. Never returns. */
FUNCTION(ap_serve)
    push    %rbp
    mov     %rsp, %rbp
1:  sti
    hlt
    jmp     1b
END(ap_serve)

/* watchdog_start(): periodic LAPIC timer on the BSP, vector VEC_WATCHDOG. */
FUNCTION(watchdog_start)
    push    %rbp
    mov     %rsp, %rbp
    movl    $0, watchdog_expired(%rip)
    mov     progress(%rip), %eax
    mov     %eax, watchdog_seen(%rip)
    mov     $LAPIC_BASE, %edx
    movl    $DCR_DIV16, LAPIC_TIMER_DCR(%rdx)
    movl    $(LVT_PERIODIC | VEC_WATCHDOG), LAPIC_LVT_TIMER(%rdx)
    movl    $WATCHDOG_COUNT, LAPIC_TIMER_ICR(%rdx)
    pop     %rbp
    ret
END(watchdog_start)

/* watchdog_stop(): stops and masks the watchdog timer. */
FUNCTION(watchdog_stop)
    push    %rbp
    mov     %rsp, %rbp
    mov     $LAPIC_BASE, %edx
    movl    $0, LAPIC_TIMER_ICR(%rdx)
    movl    $(LVT_MASKED | VEC_WATCHDOG), LAPIC_LVT_TIMER(%rdx)
    pop     %rbp
    ret
END(watchdog_stop)

/*
 * bench_ipi_roundtrip() -> %eax: 0 = rt_samples[0..iters) filled, 1 = the
 * watchdog expired. Timed: TSC, ICR write, halted wait for VEC_PONG, TSC.
 */
FUNCTION(bench_ipi_roundtrip)
    push    %rbp
    mov     %rsp, %rbp
    push    %rbx
    push    %r12
    push    %r13
    push    %r14
    mov     $LAPIC_BASE, %ebx
    ROUNDS_START rt_samples
1:  cli
    movl    $0, wake_flag(%rip)
    READ_TSC
    mov     %rax, %r8
    movl    $VEC_PING, LAPIC_ICR_LO(%rbx)
    WAIT_WAKE 9f
    READ_TSC
    sub     %r8, %rax
    ROUND_DONE
    xor     %eax, %eax
    jmp     10f
9:  mov     $1, %eax
10: pop     %r14
    pop     %r13
    pop     %r12
    pop     %rbx
    pop     %rbp
    ret
END(bench_ipi_roundtrip)

/*
 * bench_irq_latency() -> %eax: 0 = irq_samples[0..iters) filled, 1 = the
 * watchdog expired. Programs IOAPIC pin IRQ_PIN (edge, fixed, physical, APIC
 * ID 1, VEC_IRQ), then per round: TSC to irq_t0, line up and down, halted
 * wait for the AP's VEC_PONG; the sample is the AP's irq_delta. Masks the
 * pin again at the end.
 */
FUNCTION(bench_irq_latency)
    push    %rbp
    mov     %rsp, %rbp
    push    %rbx
    push    %r12
    push    %r13
    push    %r14
    xor     %eax, %eax                  /* line low before unmasking */
    mov     $TESTDEV_PORT, %edx
    out     %al, %dx
    mov     $REDIR_HI, %edi
    mov     $(AP_APIC_ID << 24), %esi
    call    ioapic_write
    mov     $REDIR_LO, %edi
    mov     $VEC_IRQ, %esi              /* fixed, physical, edge, high, unmasked */
    call    ioapic_write
    mov     $TESTDEV_PORT, %ebx
    ROUNDS_START irq_samples
1:  cli
    movl    $0, wake_flag(%rip)
    READ_TSC
    mov     %rax, irq_t0(%rip)
    mov     %ebx, %edx
    mov     $1, %eax
    out     %al, %dx                    /* rising edge: delivered now */
    xor     %eax, %eax
    out     %al, %dx
    WAIT_WAKE 9f
    mov     irq_delta(%rip), %rax
    ROUND_DONE
    xor     %r13d, %r13d
    jmp     10f
9:  mov     $1, %r13d
10: mov     $REDIR_LO, %edi
    mov     $(REDIR_MASKED | VEC_IRQ), %esi
    call    ioapic_write
    mov     %r13d, %eax
    pop     %r14
    pop     %r13
    pop     %r12
    pop     %rbx
    pop     %rbp
    ret
END(bench_irq_latency)

/* ioapic_write(reg = %edi, value = %esi): IOREGSEL = reg, IOWIN = value. */
FUNCTION(ioapic_write)
    push    %rbp
    mov     %rsp, %rbp
    mov     $IOAPIC_BASE, %eax
    mov     %edi, IOAPIC_REGSEL(%rax)
    mov     %esi, IOAPIC_WIN(%rax)
    pop     %rbp
    ret
END(ioapic_write)

/*
 * report(name = %rdi, samples = %rsi): sorts samples[0..iters) and prints
 * "ipi-bench: <name>_ticks median=M p99=P min=L n=N" and, when tsc_khz is
 * known, the same in nanoseconds as "<name>_ns" (stats.S).
 */
FUNCTION(report)
    push    %rbp
    mov     %rsp, %rbp
    push    %rbx
    push    %r12
    mov     %rdi, %rbx
    mov     %rsi, %r12
    mov     %rsi, %rdi
    mov     iters(%rip), %esi
    call    median_p99
    mov     %rax, stat_median(%rip)
    mov     %rdx, stat_p99(%rip)
    mov     (%r12), %rax
    mov     %rax, stat_min(%rip)
    mov     %rbx, %rdi
    lea     sfx_ticks(%rip), %rsi
    xor     %edx, %edx
    call    print_stats
    mov     tsc_khz(%rip), %edx
    test    %edx, %edx
    jz      1f
    mov     %rbx, %rdi
    lea     sfx_ns(%rip), %rsi
    call    print_stats
1:  pop     %r12
    pop     %rbx
    pop     %rbp
    ret
END(report)

/*
 * print_stats(name = %rdi, suffix = %rsi, khz = %edx): prints the stat_*
 * values as "ipi-bench: <name><suffix> median=M p99=P min=L n=N", in TSC
 * ticks when khz is 0, else in nanoseconds (ticks * 10^6 / khz).
 */
FUNCTION(print_stats)
    push    %rbp
    mov     %rsp, %rbp
    push    %rbx
    push    %r12
    mov     %rdi, %r12
    mov     %edx, %ebx
    push    %rsi
    push    %rsi                        /* keeps %rsp 16-byte aligned */
    PUTS    msg_prefix
    mov     %r12, %rdi
    call    serial_puts
    pop     %rdi
    pop     %rdi
    call    serial_puts
    mov     stat_median(%rip), %rdi
    mov     stat_p99(%rip), %rsi
    mov     %ebx, %edx
    call    print_median_p99
    PUTS    msg_min
    mov     stat_min(%rip), %rdi
    mov     %ebx, %esi
    call    print_scaled
    PUTS    msg_n
    PUTDEC32 iters(%rip)
    PUTS    msg_newline
    pop     %r12
    pop     %rbx
    pop     %rbp
    ret
END(print_stats)

/* ---- interrupt and exception handlers (64-bit interrupt gates: IF = 0 inside) ---- */

/* AP, VEC_PING: answers the BSP with VEC_PONG (ICR high preset), then EOI. */
FUNCTION(ping_interrupt)
    push    %rax
    mov     $LAPIC_BASE, %eax
    movl    $VEC_PONG, LAPIC_ICR_LO(%rax)
    movl    $0, LAPIC_EOI(%rax)
    pop     %rax
    iretq
END(ping_interrupt)

/* BSP, VEC_PONG: sets wake_flag, EOI. */
FUNCTION(pong_interrupt)
    push    %rax
    movl    $1, wake_flag(%rip)
    mov     $LAPIC_BASE, %eax
    movl    $0, LAPIC_EOI(%rax)
    pop     %rax
    iretq
END(pong_interrupt)

/* AP, VEC_IRQ: irq_delta = TSC - irq_t0, EOI, then wakes the BSP with VEC_PONG. */
FUNCTION(irq_interrupt)
    push    %rax
    push    %rdx
    READ_TSC
    sub     irq_t0(%rip), %rax
    mov     %rax, irq_delta(%rip)
    mov     $LAPIC_BASE, %eax
    movl    $0, LAPIC_EOI(%rax)
    movl    $VEC_PONG, LAPIC_ICR_LO(%rax)
    pop     %rdx
    pop     %rax
    iretq
END(irq_interrupt)

/* BSP, VEC_WATCHDOG: expires when no round completed since the previous tick. */
FUNCTION(watchdog_interrupt)
    push    %rax
    mov     progress(%rip), %eax
    cmp     %eax, watchdog_seen(%rip)
    jne     1f
    movl    $1, watchdog_expired(%rip)
1:  mov     %eax, watchdog_seen(%rip)
    mov     $LAPIC_BASE, %eax
    movl    $0, LAPIC_EOI(%rax)
    pop     %rax
    iretq
END(watchdog_interrupt)

/*
 * unexpected_event(vector = %rdi, -1 for an interrupt): prints
 * "ipi-bench: FAIL exception V on cpu C" (or "unexpected interrupt on cpu
 * C") and exits IB_EXIT_UNEXPECTED. Never returns.
 */
FUNCTION(unexpected_event)
    and     $~0xf, %rsp                 /* whatever the frame, realign */
    lea     msg_fail(%rip), %rsi
    lea     msg_on_cpu(%rip), %rdx
    call    print_unexpected_event      /* idt.S */
    call    serial_unlock
    mov     $IB_EXIT_UNEXPECTED, %edi
    call    exit_quietly
END(unexpected_event)

/*
 * exit_quietly(status = %edi): exit_guest with this CPU's IDT limit 0 first.
 * Should the vCPU run on after the exit-port write (hvtrace once let it),
 * exit_guest's fallback `ud2` would otherwise reach our #UD handler and print
 * a spurious FAIL; without an IDT it triple-faults, as in every other guest.
 * Never returns.
 */
FUNCTION(exit_quietly)
    push    %rbp
    mov     %rsp, %rbp
    lidt    no_idt_ptr(%rip)
    call    exit_guest
END(exit_quietly)

    .section .rodata
    .p2align 3
bench_gates:                            /* idt_init: vector, handler */
    .quad   VEC_WATCHDOG, watchdog_interrupt
    .quad   VEC_PING, ping_interrupt
    .quad   VEC_PONG, pong_interrupt
    .quad   VEC_IRQ, irq_interrupt
    .quad   0, 0
opt_iters:          .asciz "iters="
opt_irq:            .asciz "irq="
name_ipi:           .asciz "ipi_roundtrip"
name_irq:           .asciz "irq_latency"
sfx_ticks:          .asciz "_ticks"
sfx_ns:             .asciz "_ns"
msg_prefix:         .asciz "ipi-bench: "
msg_min:            .asciz " min="
msg_n:              .asciz " n="
msg_newline:        .asciz "\n"
msg_hdr_khz:        .asciz "ipi-bench: tsc_khz="
msg_hdr_iters:      .asciz " iters="
msg_hdr_warmup:     .asciz " warmup="
msg_hdr_irq:        .asciz " irq="
msg_irq_skipped:    .asciz "ipi-bench: irq_latency_ns skipped\n"
msg_fail:           .asciz "ipi-bench: FAIL "
msg_bad_boot_info:  .asciz "bad boot-info magic\n"
msg_bad_option:     .asciz "iters= must be 1 to 10000\n"
msg_one_cpu:        .asciz "needs 2 or more vCPUs (--cpus 2)\n"
msg_ap_offline:     .asciz "cpu 1 did not come online\n"
msg_icr_busy:       .asciz "IPI to start cpu 1 not delivered (ICR stayed busy)\n"
msg_timeout_ipi:    .asciz "ipi_roundtrip: no round trip completed within the watchdog period\n"
msg_timeout_irq:    .asciz "irq_latency: no interrupt arrived within the watchdog period\n"
msg_on_cpu:         .asciz " on cpu "

    .data
    .p2align 3
no_idt_ptr:
    .word 0                             /* limit 0: any vector faults, ud2 triple-faults */
    .quad 0
    .p2align 2
OBJECT(iters)
    .long DEFAULT_ITERS                 /* recorded rounds per measurement */
END(iters)
OBJECT(irq_enabled)
    .long 1                             /* 0: skip irq_latency (irq=0) */
END(irq_enabled)
OBJECT(tsc_khz)
    .long 0
END(tsc_khz)
OBJECT(wake_flag)
    .long 0                             /* set by the BSP's VEC_PONG handler */
END(wake_flag)
OBJECT(progress)
    .long 0                             /* rounds completed */
END(progress)
OBJECT(watchdog_seen)
    .long 0                             /* progress at the previous watchdog tick */
END(watchdog_seen)
OBJECT(watchdog_expired)
    .long 0
END(watchdog_expired)
    .p2align 3
OBJECT(irq_t0)
    .quad 0                             /* BSP: TSC just before raising the line */
END(irq_t0)
OBJECT(irq_delta)
    .quad 0                             /* AP: TSC at its handler minus irq_t0 */
END(irq_delta)
OBJECT(stat_min)
    .quad 0
END(stat_min)
OBJECT(stat_median)
    .quad 0
END(stat_median)
OBJECT(stat_p99)
    .quad 0
END(stat_p99)

    .bss
    .p2align 3
OBJECT(rt_samples)
    .space MAX_ITERS * 8
END(rt_samples)
OBJECT(irq_samples)
    .space MAX_ITERS * 8
END(irq_samples)
    .p2align 4
ap_stack:
    .space BOOT_STACK_SIZE
ap_stack_top:
