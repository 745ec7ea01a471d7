/*
 * xcall_lab.S: the `xcall-lab` guest, a DTrace-style cross call inside the
 * guest, run in the variants that broke DTrace's dtrace_xcall()/dtrace_sync().
 *
 * The cross call. xcall(func, arg) on CPU c publishes a request in c's own
 * mailbox (func, arg, a mask of targets = every other online CPU, a mask of
 * acknowledgements), then sends ONE fixed IPI (vector VEC_XCALL, shorthand
 * "all excluding self") and waits until every target has acknowledged. A
 * target's IPI handler (xcall_handler -> xcall_serve) scans every mailbox,
 * claims its bit in each pending request (lock btr), runs func(arg) and
 * acknowledges (xcall_ack: lock bts). The caller measures each round trip
 * with rdtsc. Every wait is bounded: the caller's wait loop (xcall_wait)
 * carries a deadman, a TSC deadline of deadman_ms (default 200 ms) worth of
 * ticks (boot info tsc_khz); when it passes, deadman_expired() records the
 * hang (which CPU waited for which) and the caller gives up and returns.
 *
 * Variants (`variant=NAME[,NAME...]` on the command line; default `all`
 * runs them in this order; `calls=N` calls per variant, default 50):
 *
 *   eoi-early        handler: EOI first (interrupts still disabled: the
 *                    interrupt gate cleared IF), then func, ack, iretq. The
 *                    caller (BSP) waits with IF = 0.            expect: ok
 *   eoi-late         handler: func, ack, then EOI, iretq.        expect: ok
 *   caller-irqs-on   the caller waits with interrupts enabled; the caller
 *                    rotates over every CPU (call i from CPU i mod n), one
 *                    caller at a time.                           expect: ok
 *   caller-irqs-off  the same, waiting with interrupts disabled (fine while
 *                    only one CPU calls at a time).              expect: ok
 *   mutual           BSP and CPU 1 cross-call each other at the same moment
 *                    (barrier, then both call), both waiting with IF = 0.
 *                    Deadlock: see below. The deadman reports it as
 *                    `HANG detected by deadman after N ms (cpu X waiting
 *                    for cpu Y)`.                                expect: hang
 *   mutual-irqs-on   the same, both waiting with IF = 1: each takes the
 *                    other's IPI while it waits (calls= counts both CPUs'
 *                    calls, 2 per round).                        expect: ok
 *   recursion        the handler on CPU 1 issues a nested cross call (to
 *                    every other CPU, the original caller included) from
 *                    inside the IPI handler, waiting with IF = 0 there; the
 *                    original caller (BSP) waits with IF = 1.    expect: ok
 *   recursion-irqs-off  the same with the BSP waiting with IF = 0.
 *                                                                expect: hang
 *   timer            the BSP's local APIC timer (periodic, vector
 *                    VEC_TIMER) handler issues the cross call, `calls`
 *                    times, waiting with IF = 0 inside the handler.
 *                                                                expect: ok
 *
 * The hardware rules (Intel SDM vol. 3A, 6.8.1 and 11.8.3-11.8.5): a fixed
 * interrupt accepted by a local APIC sits in its IRR and is dispatched to the
 * core only when RFLAGS.IF = 1 and its priority class is above the PPR (the
 * class of the highest vector in service, or the TPR); an interrupt gate
 * clears IF until iretq; the ISR bit of a vector stays set until the handler
 * writes EOI. So:
 *
 *  - mutual: CPU 0 waits (IF = 0) for CPU 1's ack; CPU 1 waits (IF = 0) for
 *    CPU 0's. Each one's IPI sits in the other's IRR and can never be taken:
 *    a deadlock on real hardware, not a bug of any APIC model. Only the
 *    deadman ends it: the first caller to give up returns, re-enables
 *    interrupts (drain_all), takes the pending IPI and so releases the other.
 *  - recursion: CPU 1's own ISR holds VEC_XCALL in service (EOI late) and
 *    its IF is 0, but the nested call needs nothing delivered TO CPU 1, only
 *    acks FROM the others; ISR priority is per local APIC, so CPU 1's in-
 *    service vector does not block the nested IPI at CPU 0. CPU 0 has nothing
 *    in service (it is not in a handler), so the nested IPI is taken as soon
 *    as CPU 0's IF is 1: with the BSP waiting with interrupts enabled the
 *    nested call completes; waiting with IF = 0 (recursion-irqs-off) it is
 *    the mutual deadlock again, which the deadman reports. ISR priority would
 *    block it only if the original caller itself were in a handler for a
 *    vector of the same or a higher priority class (a cross call from an
 *    xcall or higher-class handler), which no variant here does.
 *  - eoi-early vs eoi-late: after an early EOI the next VEC_XCALL (the
 *    caller's next call, sent as soon as the ack is seen) must stay pending
 *    in IRR until iretq sets IF again; after a late EOI it is held by the
 *    ISR until the EOI, then by IF until iretq. Either way it is taken once,
 *    after the handler. The handler checks that it is never re-entered.
 *
 * Round trips depend on where the IPI lands: measured on the software-KVM
 * hosts (HOST.md), an IPI into a vCPU halted in `sti; hlt` takes ~0.1 ms,
 * into one spinning at CPL0 with IF = 1 often ~8 ms (both irqchips), so
 * variants whose targets spin (caller-irqs-*, mutual-irqs-on, recursion)
 * often report round trips of ~8-11 ms there.
 *
 * A variant stops at the first deadman that fires on any CPU: when two CPUs
 * wait for each other both deadmen run out at about the same time, and
 * whichever CPU gives up first releases the other, whose call then
 * completes; so the hang is reported as seen by the first one (the BSP or
 * CPU 1, by timing). No new call is made while an abandoned one may still
 * be unserved (a caller reuses its mailbox).
 *
 * After each variant drain_all() enables interrupts on the BSP and waits
 * (bounded) until every mailbox is served and every AP idle, so a variant
 * that hung leaves the machine usable; it then checks that every call ran
 * func on every target. After the last variant park_aps() leaves every AP
 * halted with IF = 0 outside any handler, so the run ends with no interrupt
 * half-handled. Output, one line per variant, then a summary:
 *
 *   xcall-lab: eoi-early: ok calls=50 rt_ns median=M p99=P expected=ok
 *   xcall-lab: mutual: HANG detected by deadman after 200 ms (cpu 0 waiting for cpu 1) deadmen=1 calls=1 expected=hang
 *   xcall-lab: summary: 7 ok, 2 hang, 0 fail (every variant as expected)
 *
 * A result that differs from the expectation gets ` UNEXPECTED`. Exit status
 * 0 when every variant matched its expectation, 1 otherwise; 2 bad boot-info
 * magic, 3 bad command line, 4 an IPI to start an AP stayed undelivered, 6
 * fewer than 2 or more than XL_MAX_CPUS vCPUs, 7 an AP did not come online,
 * 8 MP table unusable, 9 an unexpected exception or interrupt.
 *
 * CPU numbering: index 0 is the BSP, then the other MP-table processors in
 * table order. Each CPU runs on its own STACK_SIZE slot of cpu_stacks (the
 * BSP switches to slot 0 in guest_main), so a CPU's index is its stack
 * pointer's slot (CPU_INDEX; handlers run on the interrupted stack). The APs
 * wait for work in `sti; hlt` (ap_idle); the BSP hands them commands
 * (post_cmd + a VEC_KICK IPI). Only the BSP prints, outside of handlers.
 * Plain integer instructions only (every CPL0 instruction is interpreted on
 * the software-KVM hosts, ~1 us each).
 */
#include "common.h"

/* Exit statuses (EXIT_OK, EXIT_BAD_BOOT_INFO = 2, EXIT_IPI_TIMEOUT = 4 from common.h). */
#define XL_EXIT_MISMATCH    1           /* some variant's outcome was not the expected one */
#define XL_EXIT_BAD_OPTION  3
#define XL_EXIT_CPUS        6
#define XL_EXIT_AP_OFFLINE  7
#define XL_EXIT_MP_TABLE    8
#define XL_EXIT_UNEXPECTED  9

/* Shape. */
#define XL_MAX_CPUS         16
#define STACK_SHIFT         14          /* 16 KiB per CPU */
#define STACK_SIZE          (1 << STACK_SHIFT)
#define DEFAULT_CALLS       50
#define MAX_CALLS           1000
#define MAX_SAMPLES         (2 * MAX_CALLS)
#define DEFAULT_DEADMAN_MS  200
#define MAX_DEADMAN_MS      60000
#define FALLBACK_TSC_KHZ    1000000     /* when the boot info does not know */
#define DRAIN_SETTLE        200         /* pause iterations with IF = 1 after a drain */

/* Vectors: the cross call's is in the highest priority class. */
#define VEC_TIMER           0x40
#define VEC_KICK            0x50
#define VEC_XCALL           0xe0

/* Local APIC registers and values not in common.h. */
#define LAPIC_EOI           0xb0
#define LAPIC_LVT_TIMER     0x320
#define LAPIC_TIMER_ICR     0x380
#define LAPIC_TIMER_DCR     0x3e0
#define LVT_MASKED          0x10000
#define LVT_PERIODIC        0x20000
#define DCR_DIV1            0xb
#define TIMER_COUNT         500000      /* 0.5 ms at a 1 GHz APIC bus */
#define ICR_ALL_BUT_SELF    0xc0000     /* destination shorthand 11 */

/* Per-CPU block (percpu + index << PCPU_SHIFT). */
#define PCPU_SHIFT          7
#define PC_APIC_ID          0           /* u32 */
#define PC_CMD_DONE         4           /* u32: 1 when no command is posted or running */
#define PC_CMD              8           /* u64: command for an AP (function), 0 = none */
#define PC_CMD_ARG          16          /* u64 */
#define PC_CMD_RESULT       24          /* u32 */
#define PC_READY            28          /* u32: mutual barrier */
#define PC_SLOT_PENDING     32          /* u64: targets that have not taken this CPU's call */
#define PC_SLOT_DONE        40          /* u64: targets that acknowledged it */
#define PC_SLOT_TARGETS     48          /* u64 */
#define PC_SLOT_FUNC        56          /* u64 */
#define PC_SLOT_ARG         64          /* u64 */
#define PC_SLOT_T0          72          /* u64: TSC when the call was sent */
#define PC_DEPTH            80          /* u32: xcall_handler nesting on this CPU */
#define PC_SERVED           84          /* u32: requests this CPU served */

/* Variant table entries. */
#define VT_NAME             0
#define VT_RUN              8           /* the driver, run on the BSP */
#define VT_FUNC             16          /* the function cross-called */
#define VT_EXPECT           24          /* OUT_OK or OUT_HANG */
#define VT_EOI_EARLY        28
#define VT_WAIT_IRQS        32          /* callers wait with IF = 1 */
#define VT_SIZE             40
#define NVARIANTS           9
#define ALL_VARIANTS        ((1 << NVARIANTS) - 1)

/* Outcomes. */
#define OUT_OK              0
#define OUT_HANG            1
#define OUT_FAIL            2

/* CPU_INDEX reg: this CPU's index, from the stack slot it runs on. */
.macro CPU_INDEX reg
    mov     %rsp, \reg
    sub     $cpu_stacks, \reg
    shr     $STACK_SHIFT, \reg
.endm

/* PCPU_OF reg: index in reg -> address of that CPU's per-CPU block. */
.macro PCPU_OF reg
    shl     $PCPU_SHIFT, \reg
    add     $percpu, \reg
.endm

/* VARIANT: one variant table entry. */
.macro VARIANT name, run, func, expect, eoi_early, wait_irqs
    .quad   \name, \run, \func
    .long   \expect, \eoi_early, \wait_irqs, 0
.endm

    .text
    .code64

/* guest_main(boot_info = %rdi): moves onto CPU 0's stack slot, runs xcall_lab_main, exits. */
FUNCTION(guest_main)
    push    %rbp
    mov     %rsp, %rbp
    cli
    lea     cpu_stacks + STACK_SIZE(%rip), %rsp
    call    xcall_lab_main
    mov     %eax, %edi
    call    xcall_lab_exit
END(guest_main)

/*
 * xcall_lab_exit(status = %edi): writes status to the debug-exit port, then
 * halts with interrupts off (rather than returning to _start, whose
 * exit_guest falls into ud2 when the vCPU is resumed after the write).
 */
FUNCTION(xcall_lab_exit)
    push    %rbp
    mov     %rsp, %rbp
    mov     %edi, %eax
    out     %al, $EXIT_PORT
    call    halt_forever
END(xcall_lab_exit)

/* xcall_lab_main(boot_info = %rdi) -> %eax: exit status. */
FUNCTION(xcall_lab_main)
    push    %rbp
    mov     %rsp, %rbp
    push    %rbx
    push    %r12
    mov     %rdi, %rbx
    cmpl    $BOOT_INFO_MAGIC, BI_MAGIC(%rbx)
    jne     .Lbad_magic
    mov     BI_TSC_KHZ(%rbx), %eax
    test    %eax, %eax
    jnz     1f
    movl    $1, tsc_khz_assumed(%rip)
    mov     $FALLBACK_TSC_KHZ, %eax
1:  mov     %eax, tsc_khz(%rip)
    mov     %rbx, %rdi
    call    parse_cmdline
    test    %eax, %eax
    jnz     .Lbad_option
    mov     BI_CPU_COUNT(%rbx), %eax
    cmp     $2, %eax
    jb      .Lcpus
    cmp     $XL_MAX_CPUS, %eax
    ja      .Lcpus
    mov     %eax, ncpus(%rip)
    mov     deadman_ms(%rip), %eax
    mov     tsc_khz(%rip), %ecx
    imul    %rcx, %rax
    mov     %rax, deadman_ticks(%rip)
    call    print_header
    call    pic_mask
    call    idt_init
    lidt    idt_ptr(%rip)
    call    lapic_enable
    call    lapic_id
    mov     %eax, bsp_apic_id(%rip)
    call    map_cpus
    test    %eax, %eax
    jnz     .Lmp_table
    movq    $1, online_mask(%rip)       /* the BSP, index 0 */
    call    start_aps
    test    %eax, %eax
    jnz     9f
    call    run_selected
    call    park_aps
    call    print_summary
    jmp     9f
.Lbad_magic:
    PUTS    msg_bad_magic
    mov     $EXIT_BAD_BOOT_INFO, %eax
    jmp     9f
.Lbad_option:
    mov     $XL_EXIT_BAD_OPTION, %eax
    jmp     9f
.Lcpus:
    PUTS    msg_cpus
    mov     $XL_EXIT_CPUS, %eax
    jmp     9f
.Lmp_table:
    mov     $XL_EXIT_MP_TABLE, %eax
9:  pop     %r12
    pop     %rbx
    pop     %rbp
    ret
END(xcall_lab_main)

/* ---- command line ---- */

/*
 * UINT_OPTION prefix, max, var, bad, next: one `prefix`N option in
 * parse_cmdline (cursor %rbx, end %r12). If the word at the cursor starts
 * with prefix, moves the cursor past N and stores N in the u32 var when
 * 1 <= N <= max (then on to 6f), else jumps to 7f with bad in %rdi; if it
 * does not, jumps to next.
 */
.macro UINT_OPTION prefix:req, max:req, var:req, bad:req, next:req
    mov     %rbx, %rdi
    mov     %r12, %rsi
    lea     \prefix(%rip), %rdx
    call    match_word
    test    %rax, %rax
    jz      \next
    mov     %rax, %rdi
    mov     %r12, %rsi
    call    parse_uint
    mov     %rdx, %rbx
    lea     \bad(%rip), %rdi
    test    %rax, %rax
    jz      7f
    cmp     $\max, %rax
    ja      7f
    mov     %eax, \var(%rip)
    jmp     6f
.endm

/*
 * parse_cmdline(boot_info = %rdi) -> %eax: 0, or 1 after printing what is
 * wrong. Words: `variant=LIST`, `calls=N` (1..MAX_CALLS), `deadman_ms=N`
 * (1..MAX_DEADMAN_MS); other words are ignored.
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
    lea     opt_variant(%rip), %rdx
    call    match_word
    test    %rax, %rax
    jz      3f
    mov     %rax, %rdi
    mov     %r12, %rsi
    call    parse_variants
    test    %rax, %rax
    jz      9f
    mov     %rax, %rbx
    jmp     6f
3:  UINT_OPTION opt_calls, MAX_CALLS, calls, msg_bad_calls, 4f
4:  UINT_OPTION opt_deadman, MAX_DEADMAN_MS, deadman_ms, msg_bad_deadman, 6f
6:  cmp     %r12, %rbx                  /* skip the rest of the word */
    jae     8f
    cmpb    $' ', (%rbx)
    je      1b
    inc     %rbx
    jmp     6b
7:  call    serial_puts
9:  mov     $1, %eax
    jmp     10f
8:  xor     %eax, %eax
10: pop     %r12
    pop     %rbx
    pop     %rbp
    ret
END(parse_cmdline)

/*
 * parse_variants(p = %rdi, end = %rsi) -> %rax: the byte after the
 * comma-separated list of variant names (or `all`) at p, selected_mask set
 * to them; 0 after printing an unknown name.
 */
FUNCTION(parse_variants)
    push    %rbp
    mov     %rsp, %rbp
    push    %rbx
    push    %r12
    push    %r13
    push    %r14
    push    %r15
    push    %r15                        /* keeps %rsp 16-byte aligned */
    mov     %rdi, %rbx                  /* token start */
    mov     %rsi, %r12                  /* end */
    movl    $0, selected_mask(%rip)
1:  mov     %rbx, %r13                  /* token end */
2:  cmp     %r12, %r13
    jae     3f
    cmpb    $',', (%r13)
    je      3f
    cmpb    $' ', (%r13)
    je      3f
    inc     %r13
    jmp     2b
3:  mov     %rbx, %rdi
    mov     %r13, %rsi
    sub     %rbx, %rsi
    lea     name_all(%rip), %rdx
    call    word_equals
    test    %eax, %eax
    jz      4f
    orl     $ALL_VARIANTS, selected_mask(%rip)
    jmp     6f
4:  lea     variants(%rip), %r14
    xor     %r15d, %r15d
5:  cmp     $NVARIANTS, %r15d
    jae     8f
    mov     %rbx, %rdi
    mov     %r13, %rsi
    sub     %rbx, %rsi
    mov     VT_NAME(%r14), %rdx
    call    word_equals
    test    %eax, %eax
    jnz     7f
    add     $VT_SIZE, %r14
    inc     %r15d
    jmp     5b
7:  btsl    %r15d, selected_mask(%rip)
6:  cmp     %r12, %r13                  /* another name after a comma? */
    jae     9f
    cmpb    $',', (%r13)
    jne     9f
    lea     1(%r13), %rbx
    jmp     1b
8:  PUTS    msg_unknown_variant
    mov     %rbx, %rdi
    mov     %r13, %rsi
    sub     %rbx, %rsi
    call    print_span
    PUTS    msg_variant_list
    xor     %eax, %eax
    jmp     10f
9:  mov     %r13, %rax
10: pop     %r15
    pop     %r15
    pop     %r14
    pop     %r13
    pop     %r12
    pop     %rbx
    pop     %rbp
    ret
END(parse_variants)

/* print_span(p = %rdi, len = %rsi): writes len bytes from p. */
FUNCTION(print_span)
    push    %rbp
    mov     %rsp, %rbp
    push    %rbx
    push    %r12
    mov     %rdi, %rbx
    mov     %rsi, %r12
1:  test    %r12, %r12
    jz      2f
    movzbl  (%rbx), %edi
    call    serial_putc
    inc     %rbx
    dec     %r12
    jmp     1b
2:  pop     %r12
    pop     %rbx
    pop     %rbp
    ret
END(print_span)

/* print_header(): "xcall-lab: cpus=N tsc_khz=K calls=C deadman_ms=D vector=V". */
FUNCTION(print_header)
    push    %rbp
    mov     %rsp, %rbp
    PUTS    msg_hdr_cpus
    PUTDEC32 ncpus(%rip)
    PUTS    msg_hdr_khz
    PUTDEC32 tsc_khz(%rip)
    cmpl    $0, tsc_khz_assumed(%rip)
    je      1f
    PUTS    msg_hdr_assumed
1:  PUTS    msg_hdr_calls
    PUTDEC32 calls(%rip)
    PUTS    msg_hdr_deadman
    PUTDEC32 deadman_ms(%rip)
    PUTS    msg_hdr_vector
    mov     $VEC_XCALL, %edi
    call    print_dec
    PUTS    msg_newline
    pop     %rbp
    ret
END(print_header)

/* ---- machine set-up ---- */

/* idt_init(): the IDT shared by every CPU: the defaults and lab_gates (idt.S). */
FUNCTION(idt_init)
    push    %rbp
    mov     %rsp, %rbp
    lea     lab_gates(%rip), %rdi
    call    idt_init_gates
    pop     %rbp
    ret
END(idt_init)

/*
 * map_cpus() -> %eax: 0, or 1 after printing why. Reads the MP table
 * (mptable.S): apic_of[0] = the BSP, then the other processors in table
 * order; fills each per-CPU block's APIC ID.
 */
FUNCTION(map_cpus)
    push    %rbp
    mov     %rsp, %rbp
    call    mp_find
    lea     msg_no_mp(%rip), %rdi
    test    %rax, %rax
    jz      8f
    mov     %rax, %rdi
    call    mp_parse
    test    %eax, %eax
    js      9f                          /* mp_parse said why */
    lea     msg_mp_count(%rip), %rdi
    cmp     ncpus(%rip), %eax
    jne     8f
    mov     %eax, %r8d                  /* processors */
    mov     bsp_apic_id(%rip), %esi
    lea     apic_of(%rip), %rdi
    mov     %sil, (%rdi)
    mov     $1, %ecx                    /* next index */
    xor     %edx, %edx                  /* table position */
    lea     cpu_apic_ids(%rip), %r9
1:  cmp     %r8d, %edx
    jae     3f
    movzbl  (%r9,%rdx), %eax
    cmp     %esi, %eax
    je      2f
    cmp     %r8d, %ecx
    jae     7f                          /* the BSP is not in the table */
    mov     %al, (%rdi,%rcx)
    inc     %ecx
2:  inc     %edx
    jmp     1b
3:  cmp     %r8d, %ecx
    jne     7f
    xor     %ecx, %ecx
4:  movzbl  (%rdi,%rcx), %eax
    mov     %rcx, %rdx
    PCPU_OF %rdx
    mov     %eax, PC_APIC_ID(%rdx)
    movl    $1, PC_CMD_DONE(%rdx)
    inc     %ecx
    cmp     %r8d, %ecx
    jb      4b
    xor     %eax, %eax
    pop     %rbp
    ret
7:  lea     msg_bsp_unlisted(%rip), %rdi
8:  call    serial_puts
9:  mov     $1, %eax
    pop     %rbp
    ret
END(map_cpus)

/*
 * start_aps() -> %eax: 0, or an exit status after printing why. Starts
 * CPUs 1 .. ncpus-1 one at a time with INIT-SIPI-SIPI (start_aps_listed,
 * aps.S; trampoline.S enters ap_main on the stack slot of the CPU's index)
 * and waits for each.
 */
FUNCTION(start_aps)
    push    %rbp
    mov     %rsp, %rbp
    push    %rbx
    push    %r12
    lea     apic_of(%rip), %rdi         /* index 0, the BSP, is skipped */
    mov     ncpus(%rip), %esi
    lea     cpu_stacks(%rip), %rdx
    mov     $STACK_SHIFT, %ecx
    call    start_aps_listed
    test    %eax, %eax
    jz      9f
    mov     %edx, %r12d                 /* the CPU that failed */
    lea     msg_ap_icr(%rip), %rdi
    mov     $EXIT_IPI_TIMEOUT, %ebx
    cmp     %ebx, %eax
    je      8f
    lea     msg_ap_offline(%rip), %rdi
    mov     $XL_EXIT_AP_OFFLINE, %ebx
8:  call    serial_puts
    mov     %r12d, %edi
    call    print_dec
    PUTS    msg_newline
    mov     %ebx, %eax
9:  pop     %r12
    pop     %rbx
    pop     %rbp
    ret
END(start_aps)

/*
 * ap_main(): an AP's 64-bit entry (trampoline.S): IDT, APIC on, counts
 * itself online, then serves commands and interrupts for good.
 */
FUNCTION(ap_main)
    push    %rbp
    mov     %rsp, %rbp
    lidt    idt_ptr(%rip)
    call    lapic_enable
    CPU_INDEX %rax
    lock btsq %rax, online_mask(%rip)
    lock incl cpus_online(%rip)
    call    ap_idle
END(ap_main)

/*
 * ap_idle(): halts with interrupts enabled (its IPI handlers serve cross
 * calls there); runs a command posted by the BSP (post_cmd) with IF = 0,
 * stores its result and sets cmd_done. STI's one-instruction shadow closes
 * the window between the check and the HLT. Never returns.
 */
FUNCTION(ap_idle)
    push    %rbp
    mov     %rsp, %rbp
    push    %rbx
    push    %rbx
    CPU_INDEX %rbx
    PCPU_OF %rbx
1:  cli
    mov     PC_CMD(%rbx), %rax
    test    %rax, %rax
    jnz     2f
    sti
    hlt
    jmp     1b
2:  movq    $0, PC_CMD(%rbx)
    mov     PC_CMD_ARG(%rbx), %rdi
    call    *%rax
    mov     %eax, PC_CMD_RESULT(%rbx)
    movl    $1, PC_CMD_DONE(%rbx)
    jmp     1b
END(ap_idle)

/*
 * ap_park(): an AP's last command: reports itself done and halts with IF = 0
 * for good, so no handler of it is still running when the BSP exits (a kick
 * still pending then is never delivered). Never returns.
 */
FUNCTION(ap_park)
    CPU_INDEX %rax
    PCPU_OF %rax
    movl    $1, PC_CMD_DONE(%rax)
    call    halt_forever
END(ap_park)

/*
 * park_aps(): hands every AP ap_park and waits (IF = 1, 4 deadman periods at
 * most per AP) until it took it. An AP runs commands only from ap_idle, after
 * its handlers returned, so once parked it has finished every interrupt it
 * accepted: tracers counting handler entries against EOIs see whole pairs.
 * An AP that never takes it (stuck) is left as it is: the outcome is already
 * judged.
 */
FUNCTION(park_aps)
    push    %rbp
    mov     %rsp, %rbp
    push    %rbx
    push    %rbx
    mov     $1, %ebx
1:  cmp     ncpus(%rip), %ebx
    jae     9f
    mov     %ebx, %edi
    lea     ap_park(%rip), %rsi
    xor     %edx, %edx
    call    post_cmd
    mov     %ebx, %edi
    call    wait_cmd_taken
    inc     %ebx
    jmp     1b
9:  pop     %rbx
    pop     %rbx
    pop     %rbp
    ret
END(park_aps)

/*
 * post_cmd(cpu = %edi, fn = %rsi, arg = %rdx): hands fn(arg) to AP `cpu`
 * (ap_idle runs it) and wakes it with VEC_KICK.
 */
FUNCTION(post_cmd)
    push    %rbp
    mov     %rsp, %rbp
    mov     %edi, %eax
    PCPU_OF %rax
    movl    $0, PC_CMD_DONE(%rax)
    mov     %rdx, PC_CMD_ARG(%rax)
    mov     %rsi, PC_CMD(%rax)
    mov     PC_APIC_ID(%rax), %edi
    mov     $VEC_KICK, %esi
    pushfq
    cli
    call    apic_send_ipi
    popfq
    test    %eax, %eax
    jz      1f
    movl    $1, icr_stuck(%rip)
1:  pop     %rbp
    ret
END(post_cmd)

/*
 * wait_until_set(addr = %rdi, ticks = %rsi, irqs_on = %edx) -> %eax: waits
 * until the u32 at addr is non-zero (0) or ticks TSC ticks pass (1), with
 * interrupts enabled if irqs_on; IF is restored on return.
 */
FUNCTION(wait_until_set)
    push    %rbp
    mov     %rsp, %rbp
    mov     %rdi, %r8
    mov     %edx, %r9d
    READ_TSC
    lea     (%rax,%rsi), %rcx           /* deadline */
    pushfq
    test    %r9d, %r9d
    jz      1f
    sti
1:  cmpl    $0, (%r8)
    jne     2f
    pause
    READ_TSC
    cmp     %rcx, %rax
    jb      1b
    popfq
    mov     $1, %eax
    pop     %rbp
    ret
2:  popfq
    xor     %eax, %eax
    pop     %rbp
    ret
END(wait_until_set)

/* ---- the cross call ---- */

/*
 * xcall(func = %rdi, arg = %rsi, irqs_on = %edx) -> %eax: 0 = every other
 * CPU ran func(arg) and acknowledged, 1 = the deadman fired first;
 * %rdx = round trip in TSC ticks. Waits with IF = 1 if irqs_on, else with
 * IF = 0; the caller's IF is restored on return.
 */
FUNCTION(xcall)
    push    %rbp
    mov     %rsp, %rbp
    push    %rbx
    push    %r12
    push    %r13
    push    %r14
    pushfq
    cli
    CPU_INDEX %r12
    mov     %r12, %rbx
    PCPU_OF %rbx
    mov     %edx, %r13d
    mov     %rdi, PC_SLOT_FUNC(%rbx)
    mov     %rsi, PC_SLOT_ARG(%rbx)
    mov     online_mask(%rip), %rax
    btr     %r12, %rax                  /* every other online CPU */
    mov     %rax, PC_SLOT_TARGETS(%rbx)
    movq    $0, PC_SLOT_DONE(%rbx)
    lock incq issued(%rip)
    READ_TSC
    mov     %rax, %r14
    mov     %rax, PC_SLOT_T0(%rbx)
    mov     PC_SLOT_TARGETS(%rbx), %rax
    mov     %rax, PC_SLOT_PENDING(%rbx) /* publish the request */
    call    xcall_send
    mov     %rbx, %rdi
    mov     %r13d, %esi
    call    xcall_wait
    mov     %eax, %r13d
    READ_TSC
    sub     %r14, %rax
    mov     %rax, %r14
    test    %r13d, %r13d
    jnz     1f
    lock incq completed(%rip)
1:  popfq
    mov     %r13d, %eax
    mov     %r14, %rdx
    pop     %r14
    pop     %r13
    pop     %r12
    pop     %rbx
    pop     %rbp
    ret
END(xcall)

/* xcall_send(): one VEC_XCALL IPI to all but self; flags icr_stuck if it stays undelivered. */
FUNCTION(xcall_send)
    push    %rbp
    mov     %rsp, %rbp
    mov     $LAPIC_BASE, %edx
    movl    $(ICR_ALL_BUT_SELF | VEC_XCALL), LAPIC_ICR_LO(%rdx)
    call    apic_wait_icr               /* lapic.S */
    test    %eax, %eax
    jz      1f
    movl    $1, icr_stuck(%rip)
1:  pop     %rbp
    ret
END(xcall_send)

/*
 * xcall_wait(slot = %rdi, irqs_on = %esi) -> %eax: waits until every target
 * of the caller's request (per-CPU block slot) acknowledged (0), or until
 * the deadman's TSC deadline, slot's send time + deadman_ticks (1, after
 * deadman_expired recorded the hang). Returns with IF = 0.
 */
FUNCTION(xcall_wait)
    push    %rbp
    mov     %rsp, %rbp
    mov     %rdi, %r8
    mov     PC_SLOT_T0(%r8), %rcx
    add     deadman_ticks(%rip), %rcx   /* deadline */
    mov     PC_SLOT_TARGETS(%r8), %r9
    test    %esi, %esi
    jz      1f
    sti
1:  cmp     PC_SLOT_DONE(%r8), %r9
    je      2f
    pause
    READ_TSC
    cmp     %rcx, %rax
    jb      1b
    cli
    mov     %r8, %rdi
    mov     %rax, %rsi
    call    deadman_expired
    pop     %rbp
    ret
2:  cli
    xor     %eax, %eax
    pop     %rbp
    ret
END(xcall_wait)

/*
 * deadman_expired(slot = %rdi, now = %rsi) -> %eax: the deadman of this
 * CPU's wait fired. 0 if every ack arrived after all (no hang); else counts
 * the hang, records the first one of the variant (this CPU, the lowest
 * target still missing, ms since the call was sent) and returns 1.
 */
FUNCTION(deadman_expired)
    push    %rbp
    mov     %rsp, %rbp
    mov     PC_SLOT_DONE(%rdi), %rcx
    not     %rcx
    and     PC_SLOT_TARGETS(%rdi), %rcx
    jz      2f
    bsf     %rcx, %r8                   /* the CPU waited for */
    mov     %rsi, %rax
    sub     PC_SLOT_T0(%rdi), %rax
    xor     %edx, %edx
    mov     tsc_khz(%rip), %ecx
    div     %rcx                        /* ms */
    mov     %rax, %r9
    lock incl hang_count(%rip)
    xor     %eax, %eax
    mov     $1, %ecx
    lock cmpxchg %ecx, hang_recorded(%rip)
    jne     1f
    CPU_INDEX %rax
    mov     %eax, hang_cpu(%rip)
    mov     %r8d, hang_waiting_for(%rip)
    mov     %r9d, hang_ms(%rip)
1:  mov     $1, %eax
    pop     %rbp
    ret
2:  xor     %eax, %eax
    pop     %rbp
    ret
END(deadman_expired)

/*
 * xcall_serve(): on a target, in the IPI handler: claims this CPU's bit in
 * every other CPU's pending request, runs its func(arg), acknowledges.
 */
FUNCTION(xcall_serve)
    push    %rbp
    mov     %rsp, %rbp
    push    %rbx
    push    %r12
    push    %r13
    push    %r13
    CPU_INDEX %r12
    xor     %r13d, %r13d                /* caller index */
1:  cmp     ncpus(%rip), %r13d
    jae     9f
    cmp     %r12d, %r13d
    je      2f
    mov     %r13, %rbx
    PCPU_OF %rbx
    lock btrq %r12, PC_SLOT_PENDING(%rbx)
    jnc     2f
    mov     PC_SLOT_ARG(%rbx), %rdi
    call    *PC_SLOT_FUNC(%rbx)
    mov     %rbx, %rdi
    mov     %r12d, %esi
    call    xcall_ack
2:  inc     %r13d
    jmp     1b
9:  pop     %r13
    pop     %r13
    pop     %r12
    pop     %rbx
    pop     %rbp
    ret
END(xcall_serve)

/* xcall_ack(slot = %rdi, cpu = %esi): cpu acknowledges the request in slot. */
FUNCTION(xcall_ack)
    push    %rbp
    mov     %rsp, %rbp
    mov     %esi, %eax
    lock btsq %rax, PC_SLOT_DONE(%rdi)
    PCPU_OF %rax
    incl    PC_SERVED(%rax)
    pop     %rbp
    ret
END(xcall_ack)

/* xcall_func_count(arg = %rdi): the cross-called function: counts one run. */
FUNCTION(xcall_func_count)
    push    %rbp
    mov     %rsp, %rbp
    lock incq func_runs(%rip)
    pop     %rbp
    ret
END(xcall_func_count)

/*
 * xcall_func_recurse(arg = %rdi): counts one run; on CPU 1 it then issues
 * a nested cross call (xcall_func_count) from inside the IPI handler,
 * waiting with IF = 0 (the handler's).
 */
FUNCTION(xcall_func_recurse)
    push    %rbp
    mov     %rsp, %rbp
    lock incq func_runs(%rip)
    CPU_INDEX %rax
    cmp     $1, %eax
    jne     1f
    mov     %rdi, %rsi
    lea     xcall_func_count(%rip), %rdi
    xor     %edx, %edx
    call    xcall
1:  pop     %rbp
    ret
END(xcall_func_recurse)

/*
 * xcall_and_record(func = %rdi, arg = %rsi, irqs_on = %edx) -> %eax: xcall;
 * a completed call's round trip becomes a sample.
 */
FUNCTION(xcall_and_record)
    push    %rbp
    mov     %rsp, %rbp
    call    xcall
    test    %eax, %eax
    jnz     1f
    mov     %rdx, %rdi
    call    record_sample
    xor     %eax, %eax
1:  pop     %rbp
    ret
END(xcall_and_record)

/* record_sample(ticks = %rdi): appends to samples (any CPU). */
FUNCTION(record_sample)
    push    %rbp
    mov     %rsp, %rbp
    mov     $1, %eax
    lock xadd %eax, sample_count(%rip)
    cmp     $MAX_SAMPLES, %eax
    jae     1f
    lea     samples(%rip), %rcx
    mov     %rdi, (%rcx,%rax,8)
1:  pop     %rbp
    ret
END(record_sample)

/* lapic_eoi(): writes the local APIC's EOI register (clobbers %rax only). */
FUNCTION(lapic_eoi)
    mov     $LAPIC_BASE, %eax
    movl    $0, LAPIC_EOI(%rax)
    ret
END(lapic_eoi)

/* ---- interrupt handlers (64-bit interrupt gates: IF = 0 inside) ---- */

/* Saves / restores what the SysV ABI lets a callee clobber, plus %rbx. */
.macro SAVE_REGS
    PUSH_SCRATCH
    push    %rbx
.endm
.macro RESTORE_REGS
    pop     %rbx
    POP_SCRATCH
.endm

/*
 * xcall_handler (VEC_XCALL): EOI first (eoi-early) or last, around
 * xcall_serve. Flags nested_fault if it is ever entered while it is already
 * running on this CPU (an interrupt delivered with IF = 0).
 */
FUNCTION(xcall_handler)
    SAVE_REGS
    CPU_INDEX %rbx
    PCPU_OF %rbx
    incl    PC_DEPTH(%rbx)
    cmpl    $1, PC_DEPTH(%rbx)
    je      1f
    movl    $1, nested_fault(%rip)
1:  cmpl    $0, cur_eoi_early(%rip)
    je      2f
    call    lapic_eoi
    call    xcall_serve
    jmp     3f
2:  call    xcall_serve
    call    lapic_eoi
3:  decl    PC_DEPTH(%rbx)
    RESTORE_REGS
    iretq
END(xcall_handler)

/*
 * timer_handler (VEC_TIMER, BSP): while the timer variant runs, issues one
 * cross call (waiting with IF = 0, in the handler) per tick; stops the timer
 * after the last call or a hang. EOI at the end.
 */
FUNCTION(timer_handler)
    SAVE_REGS
    cmpl    $0, timer_active(%rip)
    je      8f
    lea     xcall_func_count(%rip), %rdi
    mov     timer_left(%rip), %esi
    xor     %edx, %edx
    call    xcall_and_record
    test    %eax, %eax
    jnz     7f
    cmpl    $0, hang_count(%rip)
    jne     7f
    decl    timer_left(%rip)
    jnz     8f
7:  movl    $0, timer_active(%rip)
    call    timer_stop
    movl    $1, timer_done(%rip)
8:  call    lapic_eoi
    RESTORE_REGS
    iretq
END(timer_handler)

/* kick_handler (VEC_KICK): only wakes an AP from hlt. */
FUNCTION(kick_handler)
    push    %rax
    call    lapic_eoi
    pop     %rax
    iretq
END(kick_handler)

/*
 * unexpected_event(vector = %rdi, -1 for an interrupt): prints
 * "xcall-lab: FAIL exception V on cpu A" (A: APIC ID) or "... unexpected
 * interrupt ..." and exits XL_EXIT_UNEXPECTED. Never returns.
 */
FUNCTION(unexpected_event)
    and     $~0xf, %rsp
    lea     msg_fail_prefix(%rip), %rsi
    lea     msg_on_apic(%rip), %rdx
    call    print_unexpected_event      /* idt.S */
    mov     $XL_EXIT_UNEXPECTED, %edi
    call    xcall_lab_exit
END(unexpected_event)

/* ---- the variants (run on the BSP, IF = 0 between them) ---- */

/* timer_start(): periodic LAPIC timer on this CPU, VEC_TIMER, TIMER_COUNT bus ticks. */
FUNCTION(timer_start)
    push    %rbp
    mov     %rsp, %rbp
    mov     $LAPIC_BASE, %edx
    movl    $DCR_DIV1, LAPIC_TIMER_DCR(%rdx)
    movl    $(LVT_PERIODIC | VEC_TIMER), LAPIC_LVT_TIMER(%rdx)
    movl    $TIMER_COUNT, LAPIC_TIMER_ICR(%rdx)
    pop     %rbp
    ret
END(timer_start)

/* timer_stop(): stops and masks this CPU's LAPIC timer (clobbers %rdx). */
FUNCTION(timer_stop)
    push    %rbp
    mov     %rsp, %rbp
    mov     $LAPIC_BASE, %edx
    movl    $0, LAPIC_TIMER_ICR(%rdx)
    movl    $(LVT_MASKED | VEC_TIMER), LAPIC_LVT_TIMER(%rdx)
    pop     %rbp
    ret
END(timer_stop)

/* run_selected(): runs each selected variant, in table order. */
FUNCTION(run_selected)
    push    %rbp
    mov     %rsp, %rbp
    push    %rbx
    push    %r12
    lea     variants(%rip), %rbx
    xor     %r12d, %r12d
1:  cmp     $NVARIANTS, %r12d
    jae     9f
    bt      %r12d, selected_mask(%rip)
    jnc     2f
    mov     %rbx, %rdi
    call    run_variant
2:  add     $VT_SIZE, %rbx
    inc     %r12d
    jmp     1b
9:  pop     %r12
    pop     %rbx
    pop     %rbp
    ret
END(run_selected)

/* run_variant(entry = %rdi): reset, run the driver, drain, judge, report. */
FUNCTION(run_variant)
    push    %rbp
    mov     %rsp, %rbp
    push    %rbx
    push    %r12
    mov     %rdi, %rbx
    call    reset_variant
    mov     VT_EOI_EARLY(%rbx), %eax
    mov     %eax, cur_eoi_early(%rip)
    mov     VT_WAIT_IRQS(%rbx), %eax
    mov     %eax, cur_wait_irqs(%rip)
    mov     VT_FUNC(%rbx), %rax
    mov     %rax, cur_func(%rip)
    call    *VT_RUN(%rbx)
    call    drain_all
    call    judge_variant
    mov     %rbx, %rdi
    mov     %eax, %esi
    call    report_variant
    pop     %r12
    pop     %rbx
    pop     %rbp
    ret
END(run_variant)

/* reset_variant(): clears the counters and every mailbox (the machine is quiet). */
FUNCTION(reset_variant)
    push    %rbp
    mov     %rsp, %rbp
    xor     %eax, %eax
    mov     %eax, sample_count(%rip)
    mov     %rax, issued(%rip)
    mov     %rax, completed(%rip)
    mov     %rax, func_runs(%rip)
    mov     %eax, hang_count(%rip)
    mov     %eax, hang_recorded(%rip)
    mov     %eax, hang_cpu(%rip)
    mov     %eax, hang_waiting_for(%rip)
    mov     %eax, hang_ms(%rip)
    mov     %eax, nested_fault(%rip)
    mov     %eax, icr_stuck(%rip)
    mov     %eax, calls_expected(%rip)
    mov     %rax, fail_reason(%rip)
    mov     %eax, timer_active(%rip)
    xor     %ecx, %ecx
1:  mov     %rcx, %rdx
    PCPU_OF %rdx
    movq    $0, PC_SLOT_PENDING(%rdx)
    movq    $0, PC_SLOT_DONE(%rdx)
    movq    $0, PC_SLOT_TARGETS(%rdx)
    inc     %ecx
    cmp     ncpus(%rip), %ecx
    jb      1b
    pop     %rbp
    ret
END(reset_variant)

/* fail_with(reason = %rdi): records the variant's first failure reason. */
FUNCTION(fail_with)
    push    %rbp
    mov     %rsp, %rbp
    cmpq    $0, fail_reason(%rip)
    jne     1f
    mov     %rdi, fail_reason(%rip)
1:  pop     %rbp
    ret
END(fail_with)

/*
 * variant_single() (eoi-early, eoi-late, recursion, recursion-irqs-off): the
 * BSP cross-calls cur_func `calls` times; stops once any deadman fired
 * (its own or, in recursion, the nested call's on CPU 1).
 */
FUNCTION(variant_single)
    push    %rbp
    mov     %rsp, %rbp
    push    %rbx
    push    %r12
    mov     calls(%rip), %r12d
    mov     %r12d, calls_expected(%rip)
    xor     %ebx, %ebx
1:  cmp     %r12d, %ebx
    jae     9f
    mov     cur_func(%rip), %rdi
    mov     %ebx, %esi
    mov     cur_wait_irqs(%rip), %edx
    call    xcall_and_record
    test    %eax, %eax
    jnz     9f
    cmpl    $0, hang_count(%rip)        /* a nested call's deadman fired */
    jne     9f
    inc     %ebx
    jmp     1b
9:  pop     %r12
    pop     %rbx
    pop     %rbp
    ret
END(variant_single)

/*
 * variant_rotate() (caller-irqs-on, caller-irqs-off): call i is made by CPU
 * i mod ncpus, one caller at a time; the BSP waits for an AP caller with
 * IF = 1 (it is one of the targets).
 */
FUNCTION(variant_rotate)
    push    %rbp
    mov     %rsp, %rbp
    push    %rbx
    push    %r12
    push    %r13
    push    %r13
    mov     calls(%rip), %eax
    mov     %eax, calls_expected(%rip)
    xor     %ebx, %ebx                  /* call */
    xor     %r13d, %r13d                /* caller */
1:  cmp     calls(%rip), %ebx
    jae     9f
    test    %r13d, %r13d
    jnz     2f
    mov     cur_func(%rip), %rdi
    mov     %ebx, %esi
    mov     cur_wait_irqs(%rip), %edx
    call    xcall_and_record
    jmp     3f
2:  mov     %r13d, %edi
    lea     cmd_xcall_once(%rip), %rsi
    mov     %ebx, %edx
    call    run_on_cpu
3:  test    %eax, %eax
    jnz     9f
    cmpl    $0, hang_count(%rip)
    jne     9f
    inc     %ebx
    inc     %r13d
    cmp     ncpus(%rip), %r13d
    jb      1b
    xor     %r13d, %r13d
    jmp     1b
9:  pop     %r13
    pop     %r13
    pop     %r12
    pop     %rbx
    pop     %rbp
    ret
END(variant_rotate)

/* cmd_xcall_once(arg = %rdi) -> %eax: on an AP: one recorded cross call of cur_func. */
FUNCTION(cmd_xcall_once)
    push    %rbp
    mov     %rsp, %rbp
    mov     %rdi, %rsi
    mov     cur_func(%rip), %rdi
    mov     cur_wait_irqs(%rip), %edx
    call    xcall_and_record
    pop     %rbp
    ret
END(cmd_xcall_once)

/*
 * run_on_cpu(cpu = %edi, fn = %rsi, arg = %rdx) -> %eax: runs fn(arg) on
 * AP cpu and waits (IF = 1, 4 deadman periods at most) for its result;
 * 1 (and a failure) if it does not finish.
 */
FUNCTION(run_on_cpu)
    push    %rbp
    mov     %rsp, %rbp
    push    %rbx
    push    %rbx
    mov     %edi, %ebx
    call    post_cmd
    mov     %rbx, %rdi
    call    wait_cmd_done
    pop     %rbx
    pop     %rbx
    pop     %rbp
    ret
END(run_on_cpu)

/*
 * wait_cmd_taken(cpu = %edi) -> %eax: waits (IF = 1, 4 deadman periods at
 * most) until AP cpu reports its command done: 0, or 1 on timeout.
 */
FUNCTION(wait_cmd_taken)
    push    %rbp
    mov     %rsp, %rbp
    mov     %edi, %eax
    PCPU_OF %rax
    lea     PC_CMD_DONE(%rax), %rdi
    mov     deadman_ticks(%rip), %rsi
    shl     $2, %rsi
    mov     $1, %edx
    call    wait_until_set
    pop     %rbp
    ret
END(wait_cmd_taken)

/* wait_cmd_done(cpu = %edi) -> %eax: the command's result, or 1 (and a failure) on timeout. */
FUNCTION(wait_cmd_done)
    push    %rbp
    mov     %rsp, %rbp
    push    %rbx
    push    %rbx
    mov     %edi, %ebx
    call    wait_cmd_taken
    test    %eax, %eax
    jnz     1f
    PCPU_OF %rbx
    mov     PC_CMD_RESULT(%rbx), %eax
    jmp     2f
1:  lea     msg_cmd_timeout(%rip), %rdi
    call    fail_with
    mov     $1, %eax
2:  pop     %rbx
    pop     %rbx
    pop     %rbp
    ret
END(wait_cmd_done)

/*
 * variant_mutual() (mutual, mutual-irqs-on): `calls` rounds; in each, CPU 1
 * reaches a barrier with IF = 0, the BSP (IF = 0) releases it and both
 * cross-call at once; stops after the first round with a hang.
 */
FUNCTION(variant_mutual)
    push    %rbp
    mov     %rsp, %rbp
    push    %rbx
    push    %r12
    push    %r13
    push    %r13
    mov     calls(%rip), %eax
    add     %eax, %eax
    mov     %eax, calls_expected(%rip)
    lea     percpu + (1 << PCPU_SHIFT)(%rip), %r12
    xor     %ebx, %ebx
1:  cmp     calls(%rip), %ebx
    jae     9f
    movl    $0, go_flag(%rip)
    movl    $0, PC_READY(%r12)
    mov     $1, %edi
    lea     cmd_mutual_side(%rip), %rsi
    mov     %ebx, %edx
    call    post_cmd
    lea     PC_READY(%r12), %rdi
    mov     deadman_ticks(%rip), %rsi
    xor     %edx, %edx
    call    wait_until_set
    test    %eax, %eax
    jnz     7f
    movl    $1, go_flag(%rip)
    mov     cur_func(%rip), %rdi
    mov     %ebx, %esi
    mov     cur_wait_irqs(%rip), %edx
    call    xcall_and_record
    mov     %eax, %r13d
    mov     $1, %edi
    call    wait_cmd_done
    or      %eax, %r13d
    jnz     9f
    cmpl    $0, hang_count(%rip)
    jne     9f
    inc     %ebx
    jmp     1b
7:  lea     msg_barrier(%rip), %rdi
    call    fail_with
9:  pop     %r13
    pop     %r13
    pop     %r12
    pop     %rbx
    pop     %rbp
    ret
END(variant_mutual)

/*
 * cmd_mutual_side(arg = %rdi) -> %eax: CPU 1's half of a mutual round:
 * IF = 0, checks in at the barrier, waits for go, cross-calls. 2 if go never
 * came.
 */
FUNCTION(cmd_mutual_side)
    push    %rbp
    mov     %rsp, %rbp
    push    %rbx
    push    %rbx
    mov     %rdi, %rbx
    cli
    CPU_INDEX %rax
    PCPU_OF %rax
    movl    $1, PC_READY(%rax)
    lea     go_flag(%rip), %rdi
    mov     deadman_ticks(%rip), %rsi
    xor     %edx, %edx
    call    wait_until_set
    test    %eax, %eax
    jnz     1f
    mov     cur_func(%rip), %rdi
    mov     %rbx, %rsi
    mov     cur_wait_irqs(%rip), %edx
    call    xcall_and_record
    jmp     2f
1:  mov     $2, %eax
2:  pop     %rbx
    pop     %rbx
    pop     %rbp
    ret
END(cmd_mutual_side)

/*
 * variant_timer() (timer): the BSP's periodic LAPIC timer handler makes the
 * `calls` cross calls; the BSP waits with IF = 1, bounded by
 * (calls + 10) / 10 deadman periods.
 */
FUNCTION(variant_timer)
    push    %rbp
    mov     %rsp, %rbp
    mov     calls(%rip), %eax
    mov     %eax, calls_expected(%rip)
    mov     %eax, timer_left(%rip)
    movl    $0, timer_done(%rip)
    movl    $1, timer_active(%rip)
    call    timer_start
    mov     deadman_ticks(%rip), %rax
    xor     %edx, %edx
    mov     $10, %ecx
    div     %rcx
    mov     calls(%rip), %ecx
    add     $10, %ecx
    imul    %rcx, %rax
    mov     %rax, %rsi
    lea     timer_done(%rip), %rdi
    mov     $1, %edx
    call    wait_until_set
    movl    $0, timer_active(%rip)
    push    %rax
    push    %rax
    call    timer_stop
    pop     %rax
    pop     %rax
    test    %eax, %eax
    jz      1f
    lea     msg_timer_timeout(%rip), %rdi
    call    fail_with
1:  pop     %rbp
    ret
END(variant_timer)

/*
 * drain_all(): with IF = 1 on the BSP, waits (4 deadman periods at most)
 * until every mailbox is served and acknowledged and every AP is idle, so
 * CPUs released from a hang take their pending IPIs; then lets IPIs still
 * in flight land. If that does not happen, cancels every request and fails
 * the variant.
 */
FUNCTION(drain_all)
    push    %rbp
    mov     %rsp, %rbp
    push    %rbx
    push    %r12
    READ_TSC
    mov     deadman_ticks(%rip), %r12
    shl     $2, %r12
    add     %rax, %r12                  /* deadline */
    sti
1:  call    calls_quiescent
    test    %eax, %eax
    jnz     2f
    pause
    READ_TSC
    cmp     %r12, %rax
    jb      1b
    cli
    call    cancel_all
    lea     msg_not_drained(%rip), %rdi
    call    fail_with
    jmp     9f
2:  mov     $DRAIN_SETTLE, %edi
    call    delay
    cli
9:  pop     %r12
    pop     %rbx
    pop     %rbp
    ret
END(drain_all)

/* calls_quiescent() -> %eax: 1 if every request is fully acknowledged and every AP idle. */
FUNCTION(calls_quiescent)
    push    %rbp
    mov     %rsp, %rbp
    xor     %ecx, %ecx
1:  mov     %rcx, %rdx
    PCPU_OF %rdx
    cmpq    $0, PC_SLOT_PENDING(%rdx)
    jne     8f
    mov     PC_SLOT_DONE(%rdx), %rax
    cmp     PC_SLOT_TARGETS(%rdx), %rax
    jne     8f
    cmpl    $0, PC_CMD_DONE(%rdx)
    je      8f
    inc     %ecx
    cmp     ncpus(%rip), %ecx
    jb      1b
    mov     $1, %eax
    pop     %rbp
    ret
8:  xor     %eax, %eax
    pop     %rbp
    ret
END(calls_quiescent)

/* cancel_all(): withdraws every pending request (no target will claim it any more). */
FUNCTION(cancel_all)
    push    %rbp
    mov     %rsp, %rbp
    xor     %ecx, %ecx
1:  mov     %rcx, %rdx
    PCPU_OF %rdx
    xor     %eax, %eax
    xchg    %rax, PC_SLOT_PENDING(%rdx)
    mov     PC_SLOT_TARGETS(%rdx), %rax
    mov     %rax, PC_SLOT_DONE(%rdx)
    inc     %ecx
    cmp     ncpus(%rip), %ecx
    jb      1b
    pop     %rbp
    ret
END(cancel_all)

/*
 * judge_variant() -> %eax: OUT_FAIL (fail_reason set) if the variant failed
 * or its books do not balance (every issued call must have run func on every
 * other CPU once drained), else OUT_HANG if a deadman fired, else OUT_OK if
 * every expected call completed.
 */
FUNCTION(judge_variant)
    push    %rbp
    mov     %rsp, %rbp
    lea     msg_nested(%rip), %rdi
    cmpl    $0, nested_fault(%rip)
    jne     7f
    lea     msg_icr_stuck(%rip), %rdi
    cmpl    $0, icr_stuck(%rip)
    jne     7f
    cmpq    $0, fail_reason(%rip)
    jne     8f
    mov     ncpus(%rip), %eax
    dec     %eax
    imul    issued(%rip), %rax
    lea     msg_func_runs(%rip), %rdi
    cmp     func_runs(%rip), %rax
    jne     7f
    mov     $OUT_HANG, %eax
    cmpl    $0, hang_count(%rip)
    jne     9f
    mov     sample_count(%rip), %eax
    lea     msg_calls_missing(%rip), %rdi
    cmp     calls_expected(%rip), %eax
    jne     7f
    mov     $OUT_OK, %eax
    jmp     9f
7:  call    fail_with
8:  mov     $OUT_FAIL, %eax
9:  pop     %rbp
    ret
END(judge_variant)

/*
 * report_variant(entry = %rdi, outcome = %esi): prints the variant's line
 * and tallies it (n_ok / n_hang / n_fail, n_unexpected).
 */
FUNCTION(report_variant)
    push    %rbp
    mov     %rsp, %rbp
    push    %rbx
    push    %r12
    mov     %rdi, %rbx
    mov     %esi, %r12d
    cmp     $OUT_OK, %r12d
    jne     1f
    call    compute_stats
1:  call    serial_lock
    PUTS    msg_prefix
    mov     VT_NAME(%rbx), %rdi
    call    serial_puts
    PUTS    msg_colon
    cmp     $OUT_OK, %r12d
    jne     2f
    incl    n_ok(%rip)
    PUTS    msg_ok_calls
    PUTDEC32 sample_count(%rip)
    PUTS    msg_rt_ns
    mov     stat_median_ns(%rip), %rdi
    mov     stat_p99_ns(%rip), %rsi
    xor     %edx, %edx                  /* already in ns */
    call    print_median_p99
    jmp     4f
2:  cmp     $OUT_HANG, %r12d
    jne     3f
    incl    n_hang(%rip)
    PUTS    msg_hang1
    PUTDEC32 hang_ms(%rip)
    PUTS    msg_hang2
    PUTDEC32 hang_cpu(%rip)
    PUTS    msg_hang3
    PUTDEC32 hang_waiting_for(%rip)
    PUTS    msg_hang4
    PUTDEC32 hang_count(%rip)
    PUTS    msg_calls
    PUTDEC32 sample_count(%rip)
    jmp     4f
3:  incl    n_fail(%rip)
    PUTS    msg_fail_word
    mov     fail_reason(%rip), %rdi
    call    serial_puts
    PUTS    msg_issued
    mov     issued(%rip), %rdi
    call    print_dec
    PUTS    msg_completed
    mov     completed(%rip), %rdi
    call    print_dec
    PUTS    msg_runs
    mov     func_runs(%rip), %rdi
    call    print_dec
    PUTS    msg_deadmen
    PUTDEC32 hang_count(%rip)
4:  PUTS    msg_expected
    lea     word_ok(%rip), %rdi
    cmpl    $OUT_OK, VT_EXPECT(%rbx)
    je      5f
    lea     word_hang(%rip), %rdi
5:  call    serial_puts
    cmp     VT_EXPECT(%rbx), %r12d
    je      6f
    incl    n_unexpected(%rip)
    PUTS    msg_unexpected
6:  PUTS    msg_newline
    call    serial_unlock
    pop     %r12
    pop     %rbx
    pop     %rbp
    ret
END(report_variant)

/*
 * compute_stats(): sorts samples[0..n) (n = sample_count, at most
 * MAX_SAMPLES) and sets stat_median_ns and stat_p99_ns (nearest rank, stats.S).
 */
FUNCTION(compute_stats)
    push    %rbp
    mov     %rsp, %rbp
    push    %rbx
    push    %rbx                        /* keeps %rsp 16-byte aligned */
    movq    $0, stat_median_ns(%rip)
    movq    $0, stat_p99_ns(%rip)
    mov     sample_count(%rip), %esi
    cmp     $MAX_SAMPLES, %esi
    jbe     1f
    mov     $MAX_SAMPLES, %esi
1:  test    %esi, %esi
    jz      9f
    lea     samples(%rip), %rdi
    call    median_p99
    mov     %rdx, %rbx
    mov     %rax, %rdi
    mov     tsc_khz(%rip), %esi
    call    ticks_to_ns
    mov     %rax, stat_median_ns(%rip)
    mov     %rbx, %rdi
    mov     tsc_khz(%rip), %esi
    call    ticks_to_ns
    mov     %rax, stat_p99_ns(%rip)
9:  pop     %rbx
    pop     %rbx
    pop     %rbp
    ret
END(compute_stats)

/*
 * print_summary() -> %eax: prints "xcall-lab: summary: X ok, Y hang, Z fail"
 * and whether every variant matched its expectation; 0 if so, else 1.
 */
FUNCTION(print_summary)
    push    %rbp
    mov     %rsp, %rbp
    call    serial_lock
    PUTS    msg_summary
    PUTDEC32 n_ok(%rip)
    PUTS    msg_sum_ok
    PUTDEC32 n_hang(%rip)
    PUTS    msg_sum_hang
    PUTDEC32 n_fail(%rip)
    PUTS    msg_sum_fail
    cmpl    $0, n_unexpected(%rip)
    jne     1f
    PUTS    msg_sum_as_expected
    call    serial_unlock
    mov     $EXIT_OK, %eax
    jmp     2f
1:  PUTS    msg_sum_open
    PUTDEC32 n_unexpected(%rip)
    PUTS    msg_sum_unexpected
    call    serial_unlock
    mov     $XL_EXIT_MISMATCH, %eax
2:  pop     %rbp
    ret
END(print_summary)

    .section .rodata
    .p2align 3
/* The variants, in the order `all` runs them (see the header comment). */
OBJECT(variants)
    VARIANT name_eoi_early,   variant_single, xcall_func_count,   OUT_OK,   1, 0
    VARIANT name_eoi_late,    variant_single, xcall_func_count,   OUT_OK,   0, 0
    VARIANT name_caller_on,   variant_rotate, xcall_func_count,   OUT_OK,   0, 1
    VARIANT name_caller_off,  variant_rotate, xcall_func_count,   OUT_OK,   0, 0
    VARIANT name_mutual,      variant_mutual, xcall_func_count,   OUT_HANG, 0, 0
    VARIANT name_mutual_on,   variant_mutual, xcall_func_count,   OUT_OK,   0, 1
    VARIANT name_recursion,   variant_single, xcall_func_recurse, OUT_OK,   0, 1
    VARIANT name_recursion_off, variant_single, xcall_func_recurse, OUT_HANG, 0, 0
    VARIANT name_timer,       variant_timer,  xcall_func_count,   OUT_OK,   0, 0
END(variants)
    .p2align 3
lab_gates:                              /* idt_init: vector, handler */
    .quad   VEC_TIMER, timer_handler
    .quad   VEC_KICK, kick_handler
    .quad   VEC_XCALL, xcall_handler
    .quad   0, 0
name_eoi_early:     .asciz "eoi-early"
name_eoi_late:      .asciz "eoi-late"
name_caller_on:     .asciz "caller-irqs-on"
name_caller_off:    .asciz "caller-irqs-off"
name_mutual:        .asciz "mutual"
name_mutual_on:     .asciz "mutual-irqs-on"
name_recursion:     .asciz "recursion"
name_recursion_off: .asciz "recursion-irqs-off"
name_timer:         .asciz "timer"
name_all:           .asciz "all"
opt_variant:        .asciz "variant="
opt_calls:          .asciz "calls="
opt_deadman:        .asciz "deadman_ms="
msg_prefix:         .asciz "xcall-lab: "
msg_colon:          .asciz ": "
msg_newline:        .asciz "\n"
msg_hdr_cpus:       .asciz "xcall-lab: cpus="
msg_hdr_khz:        .asciz " tsc_khz="
msg_hdr_assumed:    .asciz " (assumed: the boot info does not give it)"
msg_hdr_calls:      .asciz " calls="
msg_hdr_deadman:    .asciz " deadman_ms="
msg_hdr_vector:     .asciz " vector="
msg_ok_calls:       .asciz "ok calls="
msg_rt_ns:          .asciz " rt_ns"
msg_hang1:          .asciz "HANG detected by deadman after "
msg_hang2:          .asciz " ms (cpu "
msg_hang3:          .asciz " waiting for cpu "
msg_hang4:          .asciz ") deadmen="
msg_calls:          .asciz " calls="
msg_fail_word:      .asciz "FAIL "
msg_issued:         .asciz " (issued="
msg_completed:      .asciz " completed="
msg_runs:           .asciz " func_runs="
msg_deadmen:        .asciz ") deadmen="
msg_expected:       .asciz " expected="
word_ok:            .asciz "ok"
word_hang:          .asciz "hang"
msg_unexpected:     .asciz " UNEXPECTED"
msg_summary:        .asciz "xcall-lab: summary: "
msg_sum_ok:         .asciz " ok, "
msg_sum_hang:       .asciz " hang, "
msg_sum_fail:       .asciz " fail"
msg_sum_as_expected: .asciz " (every variant as expected)\n"
msg_sum_open:       .asciz " ("
msg_sum_unexpected: .asciz " not as expected)\n"
msg_nested:         .asciz "xcall_handler re-entered on one CPU (an interrupt delivered with IF = 0)"
msg_icr_stuck:      .asciz "an IPI stayed undelivered (ICR busy)"
msg_func_runs:      .asciz "the books do not balance: func did not run once per call and target"
msg_calls_missing:  .asciz "fewer calls completed than made, without a hang"
msg_cmd_timeout:    .asciz "an AP did not finish its command in time"
msg_barrier:        .asciz "cpu 1 did not reach the barrier"
msg_timer_timeout:  .asciz "the timer handler did not make its calls in time"
msg_not_drained:    .asciz "requests still unserved after the drain (cancelled)"
msg_bad_magic:      .asciz "xcall-lab: bad boot-info magic\n"
msg_cpus:           .asciz "xcall-lab: needs 2 to 16 vCPUs (--cpus 2)\n"
msg_no_mp:          .asciz "xcall-lab: no MP table\n"
msg_mp_count:       .asciz "xcall-lab: the MP table and the boot info disagree on the CPU count\n"
msg_bsp_unlisted:   .asciz "xcall-lab: the BSP is not in the MP table\n"
msg_ap_offline:     .asciz "xcall-lab: did not come online: cpu "
msg_ap_icr:         .asciz "xcall-lab: an IPI to start an AP stayed undelivered: cpu "
msg_bad_calls:      .asciz "xcall-lab: calls= must be 1 to 1000\n"
msg_bad_deadman:    .asciz "xcall-lab: deadman_ms= must be 1 to 60000\n"
msg_unknown_variant: .asciz "xcall-lab: unknown variant `"
msg_variant_list:   .asciz "` (all, eoi-early, eoi-late, caller-irqs-on, caller-irqs-off, mutual, mutual-irqs-on, recursion, recursion-irqs-off, timer)\n"
msg_fail_prefix:    .asciz "xcall-lab: FAIL "
msg_on_apic:        .asciz " on APIC ID "

    .data
    .p2align 3
OBJECT(online_mask)
    .quad 0                             /* bit i: CPU index i is online */
END(online_mask)
OBJECT(deadman_ticks)
    .quad 0                             /* deadman_ms * tsc_khz */
END(deadman_ticks)
OBJECT(issued)
    .quad 0                             /* cross calls sent in this variant (nested ones too) */
END(issued)
OBJECT(completed)
    .quad 0                             /* ... that completed before their deadman */
END(completed)
OBJECT(func_runs)
    .quad 0                             /* runs of the cross-called functions */
END(func_runs)
OBJECT(cur_func)
    .quad 0
END(cur_func)
OBJECT(fail_reason)
    .quad 0                             /* the variant's first failure, a string */
END(fail_reason)
OBJECT(stat_median_ns)
    .quad 0
END(stat_median_ns)
OBJECT(stat_p99_ns)
    .quad 0
END(stat_p99_ns)
    .p2align 2
OBJECT(selected_mask)
    .long ALL_VARIANTS                  /* bit i: run variants[i] */
END(selected_mask)
OBJECT(calls)
    .long DEFAULT_CALLS
END(calls)
OBJECT(deadman_ms)
    .long DEFAULT_DEADMAN_MS
END(deadman_ms)
OBJECT(tsc_khz)
    .long 0
END(tsc_khz)
OBJECT(tsc_khz_assumed)
    .long 0
END(tsc_khz_assumed)
OBJECT(ncpus)
    .long 0
END(ncpus)
OBJECT(cur_eoi_early)
    .long 0
END(cur_eoi_early)
OBJECT(cur_wait_irqs)
    .long 0
END(cur_wait_irqs)
OBJECT(go_flag)
    .long 0                             /* mutual: the BSP releases CPU 1 */
END(go_flag)
OBJECT(sample_count)
    .long 0
END(sample_count)
OBJECT(calls_expected)
    .long 0
END(calls_expected)
OBJECT(hang_count)
    .long 0                             /* deadmen that fired in this variant */
END(hang_count)
OBJECT(hang_recorded)
    .long 0
END(hang_recorded)
OBJECT(hang_cpu)
    .long 0
END(hang_cpu)
OBJECT(hang_waiting_for)
    .long 0
END(hang_waiting_for)
OBJECT(hang_ms)
    .long 0
END(hang_ms)
OBJECT(nested_fault)
    .long 0
END(nested_fault)
OBJECT(icr_stuck)
    .long 0
END(icr_stuck)
OBJECT(timer_active)
    .long 0
END(timer_active)
OBJECT(timer_left)
    .long 0
END(timer_left)
OBJECT(timer_done)
    .long 0
END(timer_done)
OBJECT(n_ok)
    .long 0
END(n_ok)
OBJECT(n_hang)
    .long 0
END(n_hang)
OBJECT(n_fail)
    .long 0
END(n_fail)
OBJECT(n_unexpected)
    .long 0
END(n_unexpected)

    .bss
    .p2align 6
OBJECT(percpu)
    .space XL_MAX_CPUS << PCPU_SHIFT
END(percpu)
OBJECT(apic_of)
    .space XL_MAX_CPUS                  /* APIC ID of each CPU index */
END(apic_of)
    .p2align 3
OBJECT(samples)
    .space MAX_SAMPLES * 8              /* round trips, TSC ticks */
END(samples)
    .p2align STACK_SHIFT
OBJECT(cpu_stacks)
    .space XL_MAX_CPUS * STACK_SIZE
END(cpu_stacks)
