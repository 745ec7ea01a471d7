/*
 * spin.S: the `spin` guest. Prints one line, then loops forever, so the
 * VMM's --timeout and its stop/report machinery can be tested; the loops
 * here are the deliberately unbounded ones among the guests. Its bounded
 * modes (calls, outs, loop, stepcalls) time a loop of N iterations for the probe
 * benchmark (tests/benches/probes.rs) and exit 0.
 *
 * Command line (boot info; words separated by blanks, the last of each kind
 * wins):
 *
 *   cpus=1      only the BSP runs the loop (default)
 *   cpus=all    the BSP also starts every other processor listed in the MP
 *               table with INIT-SIPI-SIPI (trampoline.S, one at a time, each
 *               waited for), and every CPU runs the loop
 *   mode=busy   cli, then `pause` in a loop (spin_forever; default)
 *   mode=halt   `sti; hlt` in a loop with interrupts enabled
 *               (halt_forever_irqs_on); nothing programs an interrupt
 *               source, so the CPUs stay halted
 *   mode=count  cli, then increments the CPU's own u64 counter in a loop
 *               (count_forever): spin_counters[APIC ID], so progress can be
 *               read from guest memory
 *   mode=calls  the BSP calls the (almost) empty function bench_target N
 *               times in a loop, then prints `spin: calls done n=N ticks=T
 *               tsc_khz=K` (T: TSC ticks the loop took; K: boot info's TSC
 *               frequency, 0 if unknown) and exits 0
 *   mode=outs   the same loop with `outb %al, $0x80` as its body (a port the
 *               VMM ignores: one bare PIO exit per iteration); prints `spin:
 *               outs done n=N ticks=T tsc_khz=K` and exits 0
 *   mode=loop   the same loop with an empty body (the loop's own cost);
 *               prints `spin: loop done n=N ticks=T tsc_khz=K` and exits 0
 *   mode=stepcalls  as calls, but calling bench_target_step, whose first
 *               instruction (`test %rdi, %rdi`) the VMM does not emulate, so
 *               a probe on its entry is single-stepped; prints `spin:
 *               stepcalls done n=N ticks=T tsc_khz=K` and exits 0
 *   mode=mmios  the same loop with a read of the local APIC's ID register
 *               (0xfee00020) as its body: one bare MMIO exit per iteration under
 *               hvtrace's APIC; prints `spin: mmios done n=N ...` and exits 0
 *   mode=msrs   the same loop with `rdmsr` of IA32_TSC_DEADLINE (0x6e0) as its
 *               body: one bare MSR exit per iteration under hvtrace's APIC (the
 *               VMM filters it); prints `spin: msrs done n=N ...` and exits 0
 *   n=N         iterations for calls, outs, loop, stepcalls, mmios and msrs: 0 to 10000000
 *               (default 20000); ignored by the other modes
 *
 * In the bounded modes, with cpus=all, the APs halt (sti; hlt) while the
 * BSP runs the loop.
 *
 * Output: `spin: looping forever with interrupts disabled` (whatever the
 * mode), then `spin: mode=M cpus=N` once the N CPUs that will loop are
 * running (the APs print nothing), then, in the bounded modes, the `done`
 * line. Without a command line this is the BSP
 * alone in spin_forever, as the guest always did.
 *
 * Exit statuses (it never exits otherwise, except 0 after a bounded mode's
 * loop): 3 bad command line (`spin: bad
 * command line`), and with cpus=all: 1 an AP did not come online, 4 an IPI
 * to start an AP stayed undelivered, 8 MP table missing, unusable or
 * disagreeing with boot_info.cpu_count. A boot-info block without the magic
 * is treated as having no command line.
 *
 * Plain integer instructions only (CPL0 code is interpreted, ~1 us per
 * instruction, on the software-KVM hosts).
 */
#include "common.h"

#define SPIN_EXIT_BAD_OPTION    3
#define SPIN_EXIT_MP_TABLE      8

/* Values of spin_mode. */
#define MODE_BUSY               0
#define MODE_HALT               1
#define MODE_COUNT              2
#define MODE_CALLS              3       /* from here on: the bounded modes */
#define MODE_OUTS               4
#define MODE_LOOP               5
#define MODE_STEPCALLS          6
#define MODE_MMIOS              7
#define MODE_MSRS               8
#define BENCH_MMIO              0xfee00020  /* the local APIC's ID register: an MMIO exit */
#define BENCH_MSR               0x6e0       /* IA32_TSC_DEADLINE: an MSR exit (filtered) */

#define SPIN_DEFAULT_N          20000
#define SPIN_MAX_N              10000000
#define BENCH_PORT              0x80    /* ignored by the VMM: a bare PIO exit */

/* One option table entry: the word, the u32 it sets, the value. */
#define OPT_WORD                0
#define OPT_VAR                 8
#define OPT_VALUE               16
#define OPT_SIZE                24

.macro OPTION word, var, value
    .quad   \word, \var
    .long   \value, 0
.endm

/*
 * TIMED_LOOP body: %rax = TSC ticks taken by %r12 iterations of `body; dec
 * %r12; jnz` (none if %r12 is 0). Clobbers %rdx, %r12, %r13.
 */
.macro TIMED_LOOP body:vararg
    READ_TSC
    mov     %rax, %r13
    test    %r12, %r12
    jz      .Ldone\@
.Lloop\@:
    \body
    dec     %r12
    jnz     .Lloop\@
.Ldone\@:
    READ_TSC
    sub     %r13, %rax
.endm

    .text
    .code64

/* guest_main(boot_info = %rdi): never returns. */
FUNCTION(guest_main)
    push    %rbp
    mov     %rsp, %rbp
    push    %rbx
    push    %r12
    mov     %rdi, %rbx
    lea     msg_spin(%rip), %rdi
    call    serial_puts
    cmpl    $BOOT_INFO_MAGIC, BI_MAGIC(%rbx)
    jne     1f                          /* no usable boot info: the defaults */
    mov     %rbx, %rdi
    call    parse_cmdline
    test    %eax, %eax
    jnz     8f
1:  cmpl    $0, spin_all_cpus(%rip)
    je      2f
    mov     %rbx, %rdi
    call    start_aps
    test    %eax, %eax
    jnz     9f
2:  call    print_mode
    cmpl    $MODE_CALLS, spin_mode(%rip)
    jb      3f
    mov     %rbx, %rdi
    call    spin_bench                  /* bounded: returns the exit status */
    jmp     9f
3:  call    lapic_id_if_needed
    mov     %eax, %edi
    call    spin_run
8:  lea     msg_bad_cmdline(%rip), %rdi
    call    serial_puts
    mov     $SPIN_EXIT_BAD_OPTION, %eax
9:  mov     %eax, %edi
    call    exit_guest
END(guest_main)

/*
 * lapic_id_if_needed() -> %eax: this CPU's APIC ID in mode=count (its
 * counter's index), else 0 (the other modes leave the APIC untouched).
 */
FUNCTION(lapic_id_if_needed)
    push    %rbp
    mov     %rsp, %rbp
    xor     %eax, %eax
    cmpl    $MODE_COUNT, spin_mode(%rip)
    jne     1f
    call    lapic_id
1:  pop     %rbp
    ret
END(lapic_id_if_needed)

/*
 * spin_run(apic_id = %edi): runs the loop spin_mode selects, on this CPU, for
 * ever (an AP in a bounded mode halts). Never returns.
 */
FUNCTION(spin_run)
    push    %rbp
    mov     %rsp, %rbp
    mov     spin_mode(%rip), %eax
    cmp     $MODE_HALT, %eax
    je      2f
    cmp     $MODE_CALLS, %eax
    jae     2f
    cmp     $MODE_COUNT, %eax
    je      3f
    call    spin_forever
2:  call    halt_forever_irqs_on
3:  movzbl  %dil, %edi
    lea     spin_counters(%rip), %rax
    lea     (%rax,%rdi,8), %rdi
    call    count_forever
END(spin_run)

/*
 * spin_bench(boot_info = %rdi) -> %eax: 0, after timing spin_n iterations of
 * the loop spin_mode selects (calls, outs, loop or stepcalls) and printing `spin: MODE
 * done n=N ticks=T tsc_khz=K`.
 */
FUNCTION(spin_bench)
    push    %rbp
    mov     %rsp, %rbp
    push    %rbx
    push    %r12
    push    %r13
    push    %r14
    xor     %r14d, %r14d                /* TSC kHz: 0 unless the boot info says */
    cmpl    $BOOT_INFO_MAGIC, BI_MAGIC(%rdi)
    jne     1f
    mov     BI_TSC_KHZ(%rdi), %r14d
1:  mov     spin_n(%rip), %r12d
    mov     spin_mode(%rip), %ebx
    cmp     $MODE_CALLS, %ebx
    je      2f
    cmp     $MODE_OUTS, %ebx
    je      3f
    cmp     $MODE_STEPCALLS, %ebx
    je      5f
    cmp     $MODE_MMIOS, %ebx
    je      6f
    cmp     $MODE_MSRS, %ebx
    je      7f
    TIMED_LOOP
    jmp     4f
6:  mov     $BENCH_MMIO, %ecx
    TIMED_LOOP movl (%rcx), %eax
    jmp     4f
7:  mov     $BENCH_MSR, %ecx
    TIMED_LOOP rdmsr
    jmp     4f
2:  TIMED_LOOP call bench_target
    jmp     4f
5:  TIMED_LOOP call bench_target_step
    jmp     4f
3:  TIMED_LOOP outb %al, $BENCH_PORT
4:  mov     %rax, %r13                  /* ticks */
    PUTS    msg_spin_prefix
    lea     mode_names(%rip), %rcx
    mov     (%rcx,%rbx,8), %rdi
    call    serial_puts
    PUTS    msg_done_n
    PUTDEC32 spin_n(%rip)
    PUTS    msg_ticks
    mov     %r13, %rdi
    call    print_dec
    PUTS    msg_tsc_khz
    mov     %r14d, %edi
    call    print_dec
    PUTS    msg_newline
    xor     %eax, %eax
    pop     %r14
    pop     %r13
    pop     %r12
    pop     %rbx
    pop     %rbp
    ret
END(spin_bench)

/*
 * bench_target(): does nothing; mode=calls calls it in its loop. The probe
 * benchmark traps its entry (push %rbp) and its return (ret).
 */
FUNCTION(bench_target)
    push    %rbp
    mov     %rsp, %rbp
    pop     %rbp
    ret
END(bench_target)

/*
 * bench_target_step(): does nothing either; mode=stepcalls calls it in its
 * loop. Its first instruction is one the VMM does not emulate (a plain
 * integer `test`, which only sets flags), so a probe on its entry is
 * single-stepped: the probe benchmark's single-step row.
 */
FUNCTION(bench_target_step)
    test    %rdi, %rdi
    push    %rbp
    mov     %rsp, %rbp
    pop     %rbp
    ret
END(bench_target_step)

/* spin_forever(): cli, then pause in a loop for ever. */
FUNCTION(spin_forever)
    push    %rbp
    mov     %rsp, %rbp
    cli
1:  pause
    jmp     1b
END(spin_forever)

/* halt_forever_irqs_on(): sti; hlt in a loop for ever (interrupts enabled). */
FUNCTION(halt_forever_irqs_on)
    push    %rbp
    mov     %rsp, %rbp
1:  sti
    hlt
    jmp     1b
END(halt_forever_irqs_on)

/* count_forever(counter = %rdi): cli, then increments the u64 *counter for ever. */
FUNCTION(count_forever)
    push    %rbp
    mov     %rsp, %rbp
    cli
1:  incq    (%rdi)                      /* this CPU's own slot: no lock needed */
    jmp     1b
END(count_forever)

/*
 * parse_cmdline(boot_info = %rdi) -> %eax: 0, or 1 if some word is neither
 * in the option table (word_equals, cmdline.S) nor `n=` followed by digits
 * only, at most SPIN_MAX_N. Sets spin_mode, spin_all_cpus and spin_n.
 */
FUNCTION(parse_cmdline)
    push    %rbp
    mov     %rsp, %rbp
    push    %rbx
    push    %r12
    push    %r13
    push    %r14
    mov     BI_CMDLINE_ADDR(%rdi), %rbx /* cursor */
    mov     BI_CMDLINE_LEN(%rdi), %r12
    add     %rbx, %r12                  /* end */
1:  cmp     %r12, %rbx                  /* skip blanks */
    jae     7f
    cmpb    $' ', (%rbx)
    ja      2f
    inc     %rbx
    jmp     1b
2:  mov     %rbx, %r13                  /* word end */
3:  cmp     %r12, %r13
    jae     4f
    cmpb    $' ', (%r13)
    jbe     4f
    inc     %r13
    jmp     3b
4:  mov     %rbx, %rdi                  /* n=N? */
    mov     %r13, %rsi
    lea     opt_n(%rip), %rdx
    call    match_word
    test    %rax, %rax
    jz      10f
    mov     %rax, %r14                  /* the first digit */
    mov     %rax, %rdi
    mov     %r13, %rsi
    call    parse_uint
    cmp     %r14, %rdx                  /* no digit */
    je      8f
    cmp     %r13, %rdx                  /* something after the digits */
    jne     8f
    cmp     $SPIN_MAX_N, %rax
    ja      8f
    mov     %eax, spin_n(%rip)
    mov     %r13, %rbx
    jmp     1b
10: lea     options(%rip), %r14
5:  lea     options_end(%rip), %rax
    cmp     %rax, %r14
    jae     8f                          /* not an option */
    mov     %rbx, %rdi
    mov     %r13, %rsi
    sub     %rbx, %rsi
    mov     OPT_WORD(%r14), %rdx
    call    word_equals
    test    %eax, %eax
    jnz     6f
    add     $OPT_SIZE, %r14
    jmp     5b
6:  mov     OPT_VAR(%r14), %rax
    mov     OPT_VALUE(%r14), %ecx
    mov     %ecx, (%rax)
    mov     %r13, %rbx
    jmp     1b
7:  xor     %eax, %eax
    jmp     9f
8:  mov     $1, %eax
9:  pop     %r14
    pop     %r13
    pop     %r12
    pop     %rbx
    pop     %rbp
    ret
END(parse_cmdline)

/* print_mode(): prints "spin: mode=M cpus=N" (N = cpus_online). */
FUNCTION(print_mode)
    push    %rbp
    mov     %rsp, %rbp
    lea     msg_mode(%rip), %rdi
    call    serial_puts
    mov     spin_mode(%rip), %eax
    lea     mode_names(%rip), %rcx
    mov     (%rcx,%rax,8), %rdi
    call    serial_puts
    lea     msg_cpus(%rip), %rdi
    call    serial_puts
    mov     cpus_online(%rip), %edi
    call    print_dec
    lea     msg_newline(%rip), %rdi
    call    serial_puts
    pop     %rbp
    ret
END(print_mode)

/*
 * start_aps(boot_info = %rdi) -> %eax: 0 once every processor in the MP
 * table is online (running ap_main), or an exit status after printing why.
 * Starts them one at a time, in table order, each on its own stack.
 */
FUNCTION(start_aps)
    push    %rbp
    mov     %rsp, %rbp
    push    %rbx
    push    %r12
    push    %r13
    push    %r14
    mov     BI_CPU_COUNT(%rdi), %r14d
    call    lapic_enable
    call    lapic_id
    mov     %eax, bsp_apic_id(%rip)
    call    mp_find
    lea     msg_no_mp(%rip), %rdi
    test    %rax, %rax
    jz      7f
    mov     %rax, %rdi
    call    mp_parse
    test    %eax, %eax
    js      6f                          /* mp_parse said why */
    mov     %eax, %r13d                 /* processors in the table */
    lea     msg_mp_count(%rip), %rdi
    cmp     %r14d, %r13d
    jne     7f
    mov     bsp_apic_id(%rip), %edi
    mov     %r13d, %esi
    call    bsp_listed
    lea     msg_bsp_unlisted(%rip), %rdi
    test    %eax, %eax
    jz      7f
    lea     cpu_apic_ids(%rip), %rdi
    mov     %r13d, %esi
    lea     ap_stacks(%rip), %rdx
    mov     $AP_STACK_SHIFT, %ecx
    call    start_aps_listed            /* aps.S */
    test    %eax, %eax
    jz      9f
    mov     %eax, %r12d                 /* start_ap's status: EXIT_CPUS_MISSING or EXIT_IPI_TIMEOUT */
    lea     cpu_apic_ids(%rip), %rcx
    movzbl  (%rcx,%rdx), %ebx           /* the AP that failed */
    lea     msg_no_checkin(%rip), %rdi
    cmp     $EXIT_IPI_TIMEOUT, %r12d
    jne     5f
    lea     msg_ipi_timeout(%rip), %rdi
5:  call    serial_puts
    mov     %ebx, %edi
    call    print_dec
    PUTS    msg_newline
    mov     %r12d, %eax
    jmp     9f
7:  call    serial_puts
6:  mov     $SPIN_EXIT_MP_TABLE, %eax
9:  pop     %r14
    pop     %r13
    pop     %r12
    pop     %rbx
    pop     %rbp
    ret
END(start_aps)

/* bsp_listed(apic_id = %edi, count = %esi) -> %eax: 1 if cpu_apic_ids[0..count] holds apic_id. */
FUNCTION(bsp_listed)
    push    %rbp
    mov     %rsp, %rbp
    lea     cpu_apic_ids(%rip), %rdx
    xor     %eax, %eax
1:  test    %esi, %esi
    jz      2f
    movzbl  (%rdx), %ecx
    cmp     %edi, %ecx
    je      3f
    inc     %rdx
    dec     %esi
    jmp     1b
3:  inc     %eax
2:  pop     %rbp
    ret
END(bsp_listed)

/* ap_main(): an AP's 64-bit entry (trampoline.S): checks in, then runs the loop. */
FUNCTION(ap_main)
    push    %rbp
    mov     %rsp, %rbp
    call    lapic_id_if_needed
    lock incl cpus_online(%rip)
    mov     %eax, %edi
    call    spin_run
END(ap_main)

    .section .rodata
msg_spin:
    .asciz "spin: looping forever with interrupts disabled\n"
msg_bad_cmdline:
    .asciz "spin: bad command line\n"
msg_mode:           .asciz "spin: mode="
msg_cpus:           .asciz " cpus="
msg_newline:        .asciz "\n"
msg_no_mp:          .asciz "spin: no MP floating pointer found\n"
msg_mp_count:       .asciz "spin: the MP table and boot info disagree on the cpu count\n"
msg_bsp_unlisted:   .asciz "spin: the boot cpu is not in the MP table\n"
msg_no_checkin:     .asciz "spin: did not come online: cpu "
msg_ipi_timeout:    .asciz "spin: IPI not delivered (ICR stayed busy) to cpu "
name_busy:          .asciz "busy"
name_halt:          .asciz "halt"
name_count:         .asciz "count"
name_calls:         .asciz "calls"
name_outs:          .asciz "outs"
name_loop:          .asciz "loop"
name_stepcalls:     .asciz "stepcalls"
name_mmios:         .asciz "mmios"
name_msrs:          .asciz "msrs"
msg_spin_prefix:    .asciz "spin: "
msg_done_n:         .asciz " done n="
msg_ticks:          .asciz " ticks="
msg_tsc_khz:        .asciz " tsc_khz="
opt_n:              .asciz "n="
opt_cpus_1:         .asciz "cpus=1"
opt_cpus_all:       .asciz "cpus=all"
opt_mode_busy:      .asciz "mode=busy"
opt_mode_halt:      .asciz "mode=halt"
opt_mode_count:     .asciz "mode=count"
opt_mode_calls:     .asciz "mode=calls"
opt_mode_outs:      .asciz "mode=outs"
opt_mode_loop:      .asciz "mode=loop"
opt_mode_stepcalls: .asciz "mode=stepcalls"
opt_mode_mmios:     .asciz "mode=mmios"
opt_mode_msrs:      .asciz "mode=msrs"

    .p2align 3
mode_names:                             /* indexed by spin_mode */
    .quad   name_busy, name_halt, name_count, name_calls, name_outs, name_loop
    .quad   name_stepcalls, name_mmios, name_msrs
options:
    OPTION  opt_cpus_1, spin_all_cpus, 0
    OPTION  opt_cpus_all, spin_all_cpus, 1
    OPTION  opt_mode_busy, spin_mode, MODE_BUSY
    OPTION  opt_mode_halt, spin_mode, MODE_HALT
    OPTION  opt_mode_count, spin_mode, MODE_COUNT
    OPTION  opt_mode_calls, spin_mode, MODE_CALLS
    OPTION  opt_mode_outs, spin_mode, MODE_OUTS
    OPTION  opt_mode_loop, spin_mode, MODE_LOOP
    OPTION  opt_mode_stepcalls, spin_mode, MODE_STEPCALLS
    OPTION  opt_mode_mmios, spin_mode, MODE_MMIOS
    OPTION  opt_mode_msrs, spin_mode, MODE_MSRS
options_end:

    .data
    .p2align 2
OBJECT(spin_mode)
    .long MODE_BUSY                     /* one of the MODE_ values */
END(spin_mode)
OBJECT(spin_n)
    .long SPIN_DEFAULT_N                /* n=: iterations of a bounded mode */
END(spin_n)
OBJECT(spin_all_cpus)
    .long 0                             /* 1: cpus=all */
END(spin_all_cpus)

    .bss
    .p2align 6
OBJECT(spin_counters)
    .space MAX_CPUS * 8                 /* mode=count: u64 per CPU, indexed by APIC ID */
END(spin_counters)
    .p2align 12
OBJECT(ap_stacks)
    .space MAX_CPUS << AP_STACK_SHIFT   /* 4 KiB per CPU, by MP table slot */
END(ap_stacks)
