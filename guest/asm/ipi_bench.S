/*
 * ipi_bench.S: the `ipi-bench` guest, interrupt-delivery benchmarks for 2+ vCPUs.
 *
 * The BSP starts the first AP (APIC ID 1) with INIT-SIPI-SIPI (trampoline.S,
 * lapic.S); the AP loads the shared IDT and idles in `sti; hlt`. Then:
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
 * are sorted in place (Shell sort) and reported in TSC ticks and, from the
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
#define VEC_SPURIOUS        0xff

/* Local APIC registers not in common.h. */
#define LAPIC_EOI           0xb0
#define LAPIC_LVT_TIMER     0x320
#define LAPIC_TIMER_ICR     0x380
#define LAPIC_TIMER_DCR     0x3e0
#define LVT_MASKED          0x10000
#define LVT_PERIODIC        0x20000
#define DCR_DIV16           0x3
#define WATCHDOG_COUNT      0x2000000   /* x16: ~0.54 s at a 1 GHz APIC bus */

/* IOAPIC, IRQ test device and 8259 PIC. */
#define IOAPIC_BASE         0xfec00000
#define IOAPIC_REGSEL       0x00
#define IOAPIC_WIN          0x10
#define IRQ_PIN             16          /* IOAPIC-only (no 8259 behind it) */
#define REDIR_LO            (0x10 + 2 * IRQ_PIN)
#define REDIR_HI            (REDIR_LO + 1)
#define REDIR_MASKED        0x10000
#define TESTDEV_PORT        (0x2000 + IRQ_PIN)
#define PIC1_DATA           0x21
#define PIC2_DATA           0xa1

/* IDT: 64-bit interrupt gates, DPL 0. */
#define IDT_ENTRIES         256
#define GATE_INTR           0x8e00      /* present, DPL 0, type 0xe; IST 0 */
#define EXC_STUB_SIZE       8

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

/* READ_TSC: %rax = TSC (clobbers %rdx). */
.macro READ_TSC
    rdtsc
    shl     $32, %rdx
    or      %rdx, %rax
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
    lidt    idt_ptr(%rip)
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
    lea     msg_bad_boot_info(%rip), %rdi
    mov     $EXIT_BAD_BOOT_INFO, %r12d
    jmp     8f
.Lbad_option:
    lea     msg_bad_option(%rip), %rdi
    mov     $IB_EXIT_BAD_OPTION, %r12d
    jmp     8f
.Lone_cpu:
    lea     msg_one_cpu(%rip), %rdi
    mov     $IB_EXIT_ONE_CPU, %r12d
    jmp     8f
.Lap_offline:
    lea     msg_ap_offline(%rip), %rdi
    mov     $IB_EXIT_AP_OFFLINE, %r12d
    cmp     $EXIT_IPI_TIMEOUT, %eax
    jne     8f
    lea     msg_icr_busy(%rip), %rdi
    mov     $EXIT_IPI_TIMEOUT, %r12d
    jmp     8f
.Ltimeout_ipi:
    lea     msg_timeout_ipi(%rip), %rdi
    mov     $IB_EXIT_TIMEOUT, %r12d
    jmp     8f
.Ltimeout_irq:
    lea     msg_timeout_irq(%rip), %rdi
    mov     $IB_EXIT_TIMEOUT, %r12d
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

/*
 * match_word(p = %rdi, end = %rsi, prefix = %rdx) -> %rax: p past the
 * NUL-terminated prefix if [p, end) starts with it, else 0.
 */
FUNCTION(match_word)
    push    %rbp
    mov     %rsp, %rbp
1:  movzbl  (%rdx), %eax
    test    %eax, %eax
    jz      3f
    cmp     %rsi, %rdi
    jae     2f
    cmpb    %al, (%rdi)
    jne     2f
    inc     %rdi
    inc     %rdx
    jmp     1b
2:  xor     %eax, %eax
    pop     %rbp
    ret
3:  mov     %rdi, %rax
    pop     %rbp
    ret
END(match_word)

/*
 * parse_uint(p = %rdi, end = %rsi) -> %rax: the decimal number at p (0 if
 * none; saturates at MAX_ITERS + 1), %rdx: the first byte not a digit.
 */
FUNCTION(parse_uint)
    push    %rbp
    mov     %rsp, %rbp
    xor     %eax, %eax
1:  cmp     %rsi, %rdi
    jae     2f
    movzbl  (%rdi), %ecx
    sub     $'0', %ecx
    cmp     $9, %ecx
    ja      2f
    imul    $10, %rax, %rax
    add     %rcx, %rax
    inc     %rdi
    cmp     $MAX_ITERS, %rax
    jbe     1b
    mov     $(MAX_ITERS + 1), %eax
    jmp     1b
2:  mov     %rdi, %rdx
    pop     %rbp
    ret
END(parse_uint)

/* print_header(): "ipi-bench: tsc_khz=K iters=N warmup=W irq=0|1". */
FUNCTION(print_header)
    push    %rbp
    mov     %rsp, %rbp
    lea     msg_hdr_khz(%rip), %rdi
    call    serial_puts
    mov     tsc_khz(%rip), %edi
    call    print_dec
    lea     msg_hdr_iters(%rip), %rdi
    call    serial_puts
    mov     iters(%rip), %edi
    call    print_dec
    lea     msg_hdr_warmup(%rip), %rdi
    call    serial_puts
    mov     $WARMUP, %edi
    call    print_dec
    lea     msg_hdr_irq(%rip), %rdi
    call    serial_puts
    mov     irq_enabled(%rip), %edi
    call    print_dec
    lea     msg_newline(%rip), %rdi
    call    serial_puts
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

/* pic_mask(): masks every line of both 8259s (their lines also reach LINT0). */
FUNCTION(pic_mask)
    push    %rbp
    mov     %rsp, %rbp
    mov     $0xff, %al
    out     %al, $PIC1_DATA
    out     %al, $PIC2_DATA
    pop     %rbp
    ret
END(pic_mask)

/*
 * idt_init(): fills the IDT shared by both CPUs: exceptions 0-31 to their
 * stubs, 32-254 to unexpected_interrupt, then the benchmark's vectors and the
 * spurious vector.
 */
FUNCTION(idt_init)
    push    %rbp
    mov     %rsp, %rbp
    push    %rbx
    push    %r12
    xor     %ebx, %ebx
    lea     exception_stubs(%rip), %r12
1:  mov     %ebx, %edi
    mov     %r12, %rsi
    call    set_gate
    add     $EXC_STUB_SIZE, %r12
    inc     %ebx
    cmp     $32, %ebx
    jb      1b
2:  mov     %ebx, %edi
    lea     unexpected_interrupt(%rip), %rsi
    call    set_gate
    inc     %ebx
    cmp     $IDT_ENTRIES, %ebx
    jb      2b
    mov     $VEC_WATCHDOG, %edi
    lea     watchdog_interrupt(%rip), %rsi
    call    set_gate
    mov     $VEC_PING, %edi
    lea     ping_interrupt(%rip), %rsi
    call    set_gate
    mov     $VEC_PONG, %edi
    lea     pong_interrupt(%rip), %rsi
    call    set_gate
    mov     $VEC_IRQ, %edi
    lea     irq_interrupt(%rip), %rsi
    call    set_gate
    mov     $VEC_SPURIOUS, %edi
    lea     spurious_interrupt(%rip), %rsi
    call    set_gate
    pop     %r12
    pop     %rbx
    pop     %rbp
    ret
END(idt_init)

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

/*
 * start_bench_ap() -> %eax: starts APIC ID 1 with INIT-SIPI-SIPI through
 * trampoline.S (which calls ap_main) and waits for it to check in.
 * 0 = online, 1 = timed out, EXIT_IPI_TIMEOUT = an IPI stayed undelivered.
 */
FUNCTION(start_bench_ap)
    push    %rbp
    mov     %rsp, %rbp
    mov     %cr3, %rax
    mov     %rax, tramp_cr3(%rip)
    mov     %cr0, %rax
    mov     %rax, tramp_cr0(%rip)
    mov     $MSR_EFER, %ecx
    rdmsr
    and     $~EFER_LMA, %eax
    or      $EFER_LME, %eax
    mov     %eax, tramp_efer(%rip)
    mov     %edx, tramp_efer + 4(%rip)
    lea     ap_stack_top(%rip), %rax
    mov     %rax, tramp_stack_top(%rip)
    mov     $AP_APIC_ID, %edi
    mov     $ICR_INIT_ASSERT, %esi
    call    apic_send_ipi
    test    %eax, %eax
    jnz     8f
    mov     $IPI_DELAY, %edi
    call    delay
    mov     $AP_APIC_ID, %edi
    mov     $(ICR_STARTUP | SIPI_VECTOR), %esi
    call    apic_send_ipi
    test    %eax, %eax
    jnz     8f
    mov     $IPI_DELAY, %edi
    call    delay
    mov     $AP_APIC_ID, %edi
    mov     $(ICR_STARTUP | SIPI_VECTOR), %esi
    call    apic_send_ipi
    test    %eax, %eax
    jnz     8f
    mov     $2, %edi
    call    wait_for_online
    pop     %rbp
    ret
8:  mov     $EXIT_IPI_TIMEOUT, %eax
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
    lea     rt_samples(%rip), %r12
    mov     iters(%rip), %r13d
    add     $WARMUP, %r13d              /* rounds left */
    mov     $WARMUP, %r14d              /* rounds left to discard */
1:  cli
    movl    $0, wake_flag(%rip)
    READ_TSC
    mov     %rax, %r8
    movl    $VEC_PING, LAPIC_ICR_LO(%rbx)
    WAIT_WAKE 9f
    READ_TSC
    sub     %r8, %rax
    incl    progress(%rip)
    test    %r14d, %r14d
    jz      2f
    dec     %r14d
    jmp     3f
2:  mov     %rax, (%r12)
    add     $8, %r12
3:  dec     %r13d
    jnz     1b
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
    lea     irq_samples(%rip), %r12
    mov     iters(%rip), %r13d
    add     $WARMUP, %r13d
    mov     $WARMUP, %r14d
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
    incl    progress(%rip)
    test    %r14d, %r14d
    jz      2f
    dec     %r14d
    jmp     3f
2:  mov     %rax, (%r12)
    add     $8, %r12
3:  dec     %r13d
    jnz     1b
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
 * known, the same in nanoseconds as "<name>_ns". Nearest rank: the q-th
 * percentile is sorted[ceil(q * n / 100) - 1].
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
    call    sort_samples
    mov     (%r12), %rax
    mov     %rax, stat_min(%rip)
    mov     iters(%rip), %eax           /* median: index ceil(n / 2) - 1 */
    inc     %eax
    shr     $1, %eax
    dec     %eax
    mov     (%r12,%rax,8), %rax
    mov     %rax, stat_median(%rip)
    mov     iters(%rip), %eax           /* p99: index ceil(99 n / 100) - 1 */
    imul    $99, %eax, %eax
    add     $99, %eax
    xor     %edx, %edx
    mov     $100, %ecx
    div     %ecx
    dec     %eax
    mov     (%r12,%rax,8), %rax
    mov     %rax, stat_p99(%rip)
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
    lea     msg_prefix(%rip), %rdi
    call    serial_puts
    mov     %r12, %rdi
    call    serial_puts
    pop     %rdi
    pop     %rdi
    call    serial_puts
    lea     msg_median(%rip), %rdi
    call    serial_puts
    mov     stat_median(%rip), %rdi
    mov     %ebx, %esi
    call    print_scaled
    lea     msg_p99(%rip), %rdi
    call    serial_puts
    mov     stat_p99(%rip), %rdi
    mov     %ebx, %esi
    call    print_scaled
    lea     msg_min(%rip), %rdi
    call    serial_puts
    mov     stat_min(%rip), %rdi
    mov     %ebx, %esi
    call    print_scaled
    lea     msg_n(%rip), %rdi
    call    serial_puts
    mov     iters(%rip), %edi
    call    print_dec
    lea     msg_newline(%rip), %rdi
    call    serial_puts
    pop     %r12
    pop     %rbx
    pop     %rbp
    ret
END(print_stats)

/* print_scaled(ticks = %rdi, khz = %esi): prints ticks, or ticks * 10^6 / khz if khz != 0. */
FUNCTION(print_scaled)
    push    %rbp
    mov     %rsp, %rbp
    test    %esi, %esi
    jz      1f
    mov     %rdi, %rax
    mov     $1000000, %ecx
    mul     %rcx                        /* %rdx:%rax = ticks * 10^6 */
    mov     %esi, %ecx
    cmp     %rcx, %rdx
    jae     1f                          /* quotient would overflow: print ticks */
    div     %rcx
    mov     %rax, %rdi
1:  call    print_dec
    pop     %rbp
    ret
END(print_scaled)

/*
 * sort_samples(a = %rdi, n = %esi): sorts the u64 array a[0..n) ascending in
 * place (Shell sort, Ciura's gaps: few instructions for a few thousand).
 */
FUNCTION(sort_samples)
    push    %rbp
    mov     %rsp, %rbp
    mov     %esi, %esi
    lea     shell_gaps(%rip), %r8
1:  mov     (%r8), %r9                  /* gap */
    mov     %r9, %rcx                   /* i = gap */
2:  cmp     %rsi, %rcx
    jae     5f
    mov     (%rdi,%rcx,8), %rax         /* v = a[i] */
    mov     %rcx, %rdx                  /* j = i */
3:  cmp     %r9, %rdx
    jb      4f
    mov     %rdx, %r10
    sub     %r9, %r10                   /* j - gap */
    mov     (%rdi,%r10,8), %r11
    cmp     %rax, %r11
    jbe     4f
    mov     %r11, (%rdi,%rdx,8)         /* a[j] = a[j - gap] */
    mov     %r10, %rdx
    jmp     3b
4:  mov     %rax, (%rdi,%rdx,8)
    inc     %rcx
    jmp     2b
5:  add     $8, %r8
    cmp     $1, %r9
    jne     1b
    pop     %rbp
    ret
END(sort_samples)

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

/* Spurious vector: no EOI, as the SDM says. */
FUNCTION(spurious_interrupt)
    iretq
END(spurious_interrupt)

/* Any other vector 32-254: reports it on this CPU and ends the run. */
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
 * unexpected_event(vector = %rdi, -1 for an interrupt): prints
 * "ipi-bench: FAIL exception V on cpu C" (or "unexpected interrupt on cpu
 * C") and exits IB_EXIT_UNEXPECTED. Never returns.
 */
FUNCTION(unexpected_event)
    and     $~0xf, %rsp                 /* whatever the frame, realign */
    mov     %rdi, %rbx
    call    serial_lock
    lea     msg_fail(%rip), %rdi
    call    serial_puts
    test    %rbx, %rbx
    js      1f
    lea     msg_exception(%rip), %rdi
    call    serial_puts
    mov     %rbx, %rdi
    call    print_dec
    jmp     2f
1:  lea     msg_unexpected_irq(%rip), %rdi
    call    serial_puts
2:  lea     msg_on_cpu(%rip), %rdi
    call    serial_puts
    call    lapic_id
    mov     %eax, %edi
    call    print_dec
    lea     msg_newline(%rip), %rdi
    call    serial_puts
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
shell_gaps:
    .quad 1750, 701, 301, 132, 57, 23, 10, 4, 1
    .size shell_gaps, . - shell_gaps
opt_iters:          .asciz "iters="
opt_irq:            .asciz "irq="
name_ipi:           .asciz "ipi_roundtrip"
name_irq:           .asciz "irq_latency"
sfx_ticks:          .asciz "_ticks"
sfx_ns:             .asciz "_ns"
msg_prefix:         .asciz "ipi-bench: "
msg_median:         .asciz " median="
msg_p99:            .asciz " p99="
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
msg_exception:      .asciz "exception "
msg_unexpected_irq: .asciz "unexpected interrupt"
msg_on_cpu:         .asciz " on cpu "

    .data
    .p2align 3
idt_ptr:
    .word IDT_ENTRIES * 16 - 1
    .quad idt
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
OBJECT(cpus_online)
    .long 1                             /* for wait_for_online (lapic.S); the AP adds itself */
END(cpus_online)
OBJECT(tsc_khz)
    .long 0
END(tsc_khz)
OBJECT(bsp_apic_id)
    .long 0
END(bsp_apic_id)
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
    .p2align 12
OBJECT(idt)
    .space IDT_ENTRIES * 16
END(idt)
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
