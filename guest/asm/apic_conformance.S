/*
 * apic_conformance.S: the `apic-conformance` guest: setup, the list of checks,
 * the check runner and its reporting.
 *
 * The guest checks the local APIC and IOAPIC against the Intel SDM (Vol. 3,
 * "Advanced Programmable Interrupt Controller"; section numbers in these
 * files are chapter 10 as in the SDM editions up to 2022, chapter 11 in
 * later ones) and the 82093AA IOAPIC datasheet. It prints exactly one line
 * per check on COM1:
 *
 *     PASS name
 *     FAIL name: detail          (detail: what, expected value, value read)
 *     SKIP name: reason          (only when the platform does not advertise
 *                                 the feature, or has too few CPUs)
 *
 * then "apic-conformance: P passed, F failed, S skipped" and exits through
 * the debug-exit port with F (at most 255). An unexpected exception prints
 * "FAIL name: unexpected exception ..." and exits 255.
 *
 * The checks, in running order (each file's header gives the SDM rules):
 *   interrupt_return    apic_conf_local.S   64-bit IDT gate + iretq round trip
 *   version             apic_conf_local.S   version register fields
 *   apic_id             apic_conf_local.S   ID = CPUID initial APIC ID = MP table
 *   reset_state         apic_conf_local.S   register values at reset / after INIT
 *   ap_startup          apic_conf_smp.S     INIT-SIPI-SIPI starts every AP
 *   readonly_registers  apic_conf_local.S   writes to read-only registers ignored
 *   tpr_cr8             apic_conf_local.S   CR8 is TPR[7:4]
 *   tpr_masking         apic_conf_local.S   class <= TPR class stays pending
 *   ppr_rule            apic_conf_local.S   PPR = max(TPR, ISRV class)
 *   priority_order      apic_conf_local.S   highest pending vector first
 *   nested_interrupts   apic_conf_local.S   only a higher class preempts
 *   early_eoi           apic_conf_local.S   EOI with IF=0: next one waits for iretq
 *   self_ipi            apic_conf_local.S   ICR self shorthand and own ID
 *   icr_shorthands      apic_conf_smp.S     self, all-incl, all-excl, none, 0xff
 *   logical_flat        apic_conf_smp.S     DFR flat, LDR bitmap
 *   logical_cluster     apic_conf_smp.S     DFR cluster, LDR cluster/member
 *   lowest_priority     apic_conf_smp.S     lowest TPR in the set wins
 *   nmi                 apic_conf_smp.S     NMI via ICR, to self with IF=0, to APs
 *   timer_oneshot       apic_conf_timer.S   one-shot, divide, current count
 *   timer_periodic      apic_conf_timer.S   periodic reload
 *   timer_tsc_deadline  apic_conf_timer.S   IA32_TSC_DEADLINE
 *   ioapic_level        apic_conf_ioapic.S  level pin, TMR, remote IRR, re-delivery
 *   directed_eoi        apic_conf_ioapic.S  SVR[12] + IOAPIC EOI register
 *   esr_illegal_vector  apic_conf_local.S   ESR write-to-latch, send illegal vector
 *   x2apic_switch       apic_conf_x2apic.S  xAPIC -> x2APIC -> disabled -> xAPIC
 *
 * Command line (boot info): "checks=a,b,c" runs only the named checks.
 *
 * Every CPU's per-CPU block (apic_conformance.h, PC_*) is at GS.base; the
 * BSP is the only CPU that runs checks, the APs (the first MAX_TEST_CPUS
 * processors of the MP table; slot = MP table index) idle in `hlt` and run
 * commands the BSP posts (apic_conf_cpu.S). Between checks the runner
 * restores a known state (cleanup_check) and zeroes every counter
 * (prepare_check), so a failed check cannot disturb the next one.
 */
#include "apic_conformance.h"

    .text
    .code64

/*
 * guest_main(boot_info = %rdi): sets up, runs the checks, prints the summary
 * and exits with the number of failures (255 if setup fails). Never returns.
 */
FUNCTION(guest_main)
    push    %rbp
    mov     %rsp, %rbp
    push    %rbx
    push    %r12
    mov     %rdi, %rbx
    cmpl    $BOOT_INFO_MAGIC, BI_MAGIC(%rbx)
    jne     8f
    call    parse_cmdline
    call    mp_find
    test    %rax, %rax
    jz      7f
    mov     %rax, %rdi
    call    mp_parse
    test    %eax, %eax
    jle     7f
    cmp     $MAX_TEST_CPUS, %eax
    jbe     1f
    mov     $MAX_TEST_CPUS, %eax
1:  mov     %eax, cpu_slots(%rip)
    mov     %eax, %edi
    call    percpu_init_all
    call    lapic_id
    mov     %eax, bsp_apic_id(%rip)
    mov     %eax, %edi
    call    slot_of_apic_id
    test    %eax, %eax
    js      6f
    mov     %eax, bsp_slot(%rip)
    mov     %eax, %edi
    call    cpu_enter                   /* GS.base, reset snapshot, IDT, APIC on */
    mov     bsp_slot(%rip), %ecx
    mov     $1, %eax
    shl     %cl, %eax
    mov     %eax, online_mask(%rip)
    mov     $1, %eax
    cpuid
    mov     %ecx, cpuid1_ecx(%rip)
    call    pic_mask                    /* ISA IRQs only through the IOAPIC (lapic.S) */
    call    start_all_aps
    call    run_checks
    call    print_summary
    mov     failed(%rip), %eax
    cmp     $255, %eax
    jbe     9f
    mov     $255, %eax
    jmp     9f
6:  lea     msg_bsp_unlisted(%rip), %rdi
    call    serial_puts
    mov     $255, %eax
    jmp     9f
7:  lea     msg_no_mp(%rip), %rdi
    call    serial_puts
    mov     $255, %eax
    jmp     9f
8:  lea     msg_bad_boot_info(%rip), %rdi
    call    serial_puts
    mov     $255, %eax
9:  mov     %eax, %edi
    call    conformance_exit
END(guest_main)

/* run_checks(): runs every selected check in table order and counts the results. */
FUNCTION(run_checks)
    push    %rbp
    mov     %rsp, %rbp
    push    %rbx
    push    %r12
    lea     check_table(%rip), %rbx
1:  mov     (%rbx), %r12                /* name */
    test    %r12, %r12
    jz      9f
    mov     %r12, %rdi
    call    check_selected
    test    %eax, %eax
    jz      5f
    mov     %r12, current_check(%rip)
    call    prepare_check
    call    *8(%rbx)
    cmp     $RESULT_FAIL, %eax
    je      3f
    cmp     $RESULT_SKIP, %eax
    je      4f
    incl    passed(%rip)
    lea     str_pass(%rip), %rdi
    call    report_prefix
    lea     msg_newline(%rip), %rdi
    call    serial_puts
    call    serial_unlock
    jmp     2f
3:  incl    failed(%rip)
    jmp     2f
4:  incl    skipped(%rip)
2:  call    cleanup_check
5:  add     $16, %rbx
    jmp     1b
9:  pop     %r12
    pop     %rbx
    pop     %rbp
    ret
END(run_checks)

/*
 * report_prefix(kind = %rdi): takes the serial lock and prints "<kind> <check>"
 * (kind is "PASS", "FAIL" or "SKIP"). The caller finishes the line and unlocks.
 */
FUNCTION(report_prefix)
    push    %rbp
    mov     %rsp, %rbp
    push    %rbx
    mov     %rdi, %rbx
    call    serial_lock
    mov     %rbx, %rdi
    call    serial_puts
    mov     $' ', %edi
    call    serial_putc
    mov     current_check(%rip), %rdi
    call    serial_puts
    pop     %rbx
    pop     %rbp
    ret
END(report_prefix)

/*
 * fail_prefix(): prints "FAIL <check>: " and, when set by the check, "cpu N: "
 * (fail_cpu). Leaves the serial lock held.
 */
FUNCTION(fail_prefix)
    push    %rbp
    mov     %rsp, %rbp
    lea     str_fail(%rip), %rdi
    call    report_prefix
    lea     str_colon(%rip), %rdi
    call    serial_puts
    mov     fail_cpu(%rip), %eax
    test    %eax, %eax
    js      1f
    lea     str_cpu(%rip), %rdi
    call    serial_puts
    mov     fail_cpu(%rip), %edi
    call    print_dec
    lea     str_colon(%rip), %rdi
    call    serial_puts
1:  pop     %rbp
    ret
END(fail_prefix)

/*
 * check_fail_cmp (jumped to from a check): what = %rdi, want = %rsi, got = %rdx,
 * relation = %rcx ("", "at least ", ...). Prints
 * "FAIL <check>: [cpu N: ]what[ 0x<fail_arg>]: expected <relation>0x<want>, got 0x<got>"
 * and returns RESULT_FAIL from the check.
 */
FUNCTION(check_fail_cmp)
    mov     %rdi, fail_what(%rip)
    mov     %rsi, fail_want(%rip)
    mov     %rdx, fail_got(%rip)
    mov     %rcx, fail_rel(%rip)
    call    fail_prefix
    mov     fail_what(%rip), %rdi
    call    serial_puts
    mov     fail_arg(%rip), %rdi
    cmp     $-1, %rdi
    je      1f
    mov     $' ', %edi
    call    serial_putc
    mov     fail_arg(%rip), %rdi
    call    print_hex
1:  PUTS    str_expected
    mov     fail_rel(%rip), %rdi
    call    serial_puts
    jmp     check_fail_values
END(check_fail_cmp)

/* check_fail_timeout (jumped to): like check_fail_cmp with ": timed out" and "at least". */
FUNCTION(check_fail_timeout)
    mov     %rdi, fail_what(%rip)
    mov     %rsi, fail_want(%rip)
    mov     %rdx, fail_got(%rip)
    call    fail_prefix
    mov     fail_what(%rip), %rdi
    call    serial_puts
    PUTS    str_timed_out
    jmp     check_fail_values
END(check_fail_timeout)

/*
 * check_fail_values (jumped to from check_fail_cmp / check_fail_timeout, the
 * serial lock held): ends the FAIL line with "0x<want>, got 0x<got>" and
 * returns RESULT_FAIL from the check.
 */
FUNCTION(check_fail_values)
    mov     fail_want(%rip), %rdi
    call    print_hex
    PUTS    str_got
    mov     fail_got(%rip), %rdi
    call    print_hex
    mov     $RESULT_FAIL, %ebx
    jmp     check_end_line
END(check_fail_values)

/* check_fail_text (jumped to): text = %rdi. Prints "FAIL <check>: [cpu N: ]text". */
FUNCTION(check_fail_text)
    mov     %rdi, fail_what(%rip)
    call    fail_prefix
    mov     fail_what(%rip), %rdi
    call    serial_puts
    mov     $RESULT_FAIL, %ebx
    jmp     check_end_line
END(check_fail_text)

/* check_skip (jumped to): reason = %rdi. Prints "SKIP <check>: reason", returns RESULT_SKIP. */
FUNCTION(check_skip)
    mov     %rdi, fail_what(%rip)
    lea     str_skip(%rip), %rdi
    call    report_prefix
    PUTS    str_colon
    mov     fail_what(%rip), %rdi
    call    serial_puts
    mov     $RESULT_SKIP, %ebx
    jmp     check_end_line
END(check_skip)

/*
 * check_end_line (jumped to, result = %ebx, the serial lock held): ends the
 * report line, releases the lock and returns result from the check
 * (check_return restores the check's %rbx).
 */
FUNCTION(check_end_line)
    PUTS    msg_newline
    call    serial_unlock
    mov     %ebx, %eax
    jmp     check_return
END(check_end_line)

/* check_return (jumped to, %eax = result): unwinds a CHECK_ENTER frame and returns. */
FUNCTION(check_return)
    lea     -40(%rbp), %rsp
    pop     %r15
    pop     %r14
    pop     %r13
    pop     %r12
    pop     %rbx
    pop     %rbp
    ret
END(check_return)

/* print_summary(): "apic-conformance: P passed, F failed, S skipped". */
FUNCTION(print_summary)
    push    %rbp
    mov     %rsp, %rbp
    call    serial_lock
    lea     msg_summary(%rip), %rdi
    call    serial_puts
    mov     passed(%rip), %edi
    call    print_dec
    lea     msg_passed(%rip), %rdi
    call    serial_puts
    mov     failed(%rip), %edi
    call    print_dec
    lea     msg_failed(%rip), %rdi
    call    serial_puts
    mov     skipped(%rip), %edi
    call    print_dec
    lea     msg_skipped(%rip), %rdi
    call    serial_puts
    call    serial_unlock
    pop     %rbp
    ret
END(print_summary)

/* print_hex(v = %rdi): writes "0x" and v in hexadecimal, without leading zeros. */
FUNCTION(print_hex)
    push    %rbp
    mov     %rsp, %rbp
    push    %rbx
    push    %r12
    push    %r13
    mov     %rdi, %rbx
    mov     $'0', %edi
    call    serial_putc
    mov     $'x', %edi
    call    serial_putc
    mov     $60, %r12d                  /* shift of the current nibble */
    xor     %r13d, %r13d                /* 1 once a digit was printed */
1:  mov     %rbx, %rax
    mov     %r12d, %ecx
    shr     %cl, %rax
    and     $0xf, %eax
    or      %eax, %r13d
    jnz     2f
    test    %r12d, %r12d                /* always print the last digit */
    jnz     3f
2:  mov     $1, %r13d
    lea     hex_digits(%rip), %rdx
    movzbl  (%rdx,%rax), %edi
    call    serial_putc
3:  sub     $4, %r12d
    jns     1b
    pop     %r13
    pop     %r12
    pop     %rbx
    pop     %rbp
    ret
END(print_hex)

/*
 * parse_cmdline(): looks for "checks=" at the start of a word of the boot
 * command line; records the list after it in check_list/check_list_len.
 */
FUNCTION(parse_cmdline)
    push    %rbp
    mov     %rsp, %rbp
    mov     boot_info(%rip), %rax
    mov     BI_CMDLINE_ADDR(%rax), %rsi /* cursor */
    mov     BI_CMDLINE_LEN(%rax), %rcx
    lea     (%rsi,%rcx), %r8            /* end */
    mov     %rsi, %r9                   /* start */
1:  lea     7(%rsi), %rax
    cmp     %r8, %rax
    ja      9f
    cmp     %r9, %rsi                   /* at a word start? */
    je      2f
    cmpb    $' ', -1(%rsi)
    jne     3f
2:  lea     str_checks_eq(%rip), %rdi
    xor     %edx, %edx
4:  movzbl  (%rdi,%rdx), %eax
    test    %eax, %eax
    jz      5f                          /* matched "checks=" */
    cmpb    %al, (%rsi,%rdx)
    jne     3f
    inc     %edx
    jmp     4b
5:  add     $7, %rsi
    mov     %rsi, check_list(%rip)
    xor     %ecx, %ecx
6:  lea     (%rsi,%rcx), %rax
    cmp     %r8, %rax
    jae     7f
    cmpb    $' ', (%rax)
    je      7f
    inc     %ecx
    jmp     6b
7:  mov     %rcx, check_list_len(%rip)
    movl    $1, check_list_set(%rip)
    jmp     9f
3:  inc     %rsi
    jmp     1b
9:  pop     %rbp
    ret
END(parse_cmdline)

/* check_selected(name = %rdi) -> %eax: 1 if no "checks=" was given or name is in the list. */
FUNCTION(check_selected)
    push    %rbp
    mov     %rsp, %rbp
    mov     $1, %eax
    cmpl    $0, check_list_set(%rip)
    je      9f
    mov     check_list(%rip), %rsi      /* item start */
    mov     check_list_len(%rip), %r8
    add     %rsi, %r8                   /* list end */
1:  cmp     %r8, %rsi
    jae     8f
    xor     %ecx, %ecx                  /* compare item with name */
2:  lea     (%rsi,%rcx), %rax
    movzbl  (%rdi,%rcx), %edx
    cmp     %r8, %rax
    jae     3f
    cmpb    $',', (%rax)
    je      3f
    test    %edx, %edx
    jz      4f
    cmpb    %dl, (%rax)
    jne     4f
    inc     %ecx
    jmp     2b
3:  test    %edx, %edx                  /* item ended: match if the name ended too */
    jnz     4f
    mov     $1, %eax
    jmp     9f
4:  lea     (%rsi,%rcx), %rax           /* skip to the next item */
    cmp     %r8, %rax
    jae     8f
    inc     %ecx
    cmpb    $',', (%rax)
    jne     4b
    add     %rcx, %rsi
    jmp     1b
8:  xor     %eax, %eax
9:  pop     %rbp
    ret
END(check_selected)

/*
 * prepare_check(): interrupts off, every CPU's counters, log and fault state
 * zeroed, no hooks, no failure context.
 */
FUNCTION(prepare_check)
    push    %rbp
    mov     %rsp, %rbp
    cli
    call    zero_counts_all
    lea     hook_rec(%rip), %rdi
    ZERO_QWORDS 16
    movl    $-1, fail_cpu(%rip)
    movq    $-1, fail_arg(%rip)
    pop     %rbp
    ret
END(prepare_check)

    .section .rodata
    .p2align 3
/* The checks, in running order: name, function. */
OBJECT(check_table)
    .quad name_interrupt_return, check_interrupt_return
    .quad name_version, check_version
    .quad name_apic_id, check_apic_id
    .quad name_reset_state, check_reset_state
    .quad name_ap_startup, check_ap_startup
    .quad name_readonly_registers, check_readonly_registers
    .quad name_tpr_cr8, check_tpr_cr8
    .quad name_tpr_masking, check_tpr_masking
    .quad name_ppr_rule, check_ppr_rule
    .quad name_priority_order, check_priority_order
    .quad name_nested_interrupts, check_nested_interrupts
    .quad name_early_eoi, check_early_eoi
    .quad name_self_ipi, check_self_ipi
    .quad name_icr_shorthands, check_icr_shorthands
    .quad name_logical_flat, check_logical_flat
    .quad name_logical_cluster, check_logical_cluster
    .quad name_lowest_priority, check_lowest_priority
    .quad name_nmi, check_nmi
    .quad name_timer_oneshot, check_timer_oneshot
    .quad name_timer_periodic, check_timer_periodic
    .quad name_timer_tsc_deadline, check_timer_tsc_deadline
    .quad name_ioapic_level, check_ioapic_level
    .quad name_directed_eoi, check_directed_eoi
    .quad name_esr_illegal_vector, check_esr_illegal_vector
    .quad name_x2apic_switch, check_x2apic_switch
    .quad 0, 0
END(check_table)

name_interrupt_return:      .asciz "interrupt_return"
name_version:               .asciz "version"
name_apic_id:               .asciz "apic_id"
name_reset_state:           .asciz "reset_state"
name_ap_startup:            .asciz "ap_startup"
name_readonly_registers:    .asciz "readonly_registers"
name_tpr_cr8:               .asciz "tpr_cr8"
name_tpr_masking:           .asciz "tpr_masking"
name_ppr_rule:              .asciz "ppr_rule"
name_priority_order:        .asciz "priority_order"
name_nested_interrupts:     .asciz "nested_interrupts"
name_early_eoi:             .asciz "early_eoi"
name_self_ipi:              .asciz "self_ipi"
name_icr_shorthands:        .asciz "icr_shorthands"
name_logical_flat:          .asciz "logical_flat"
name_logical_cluster:       .asciz "logical_cluster"
name_lowest_priority:       .asciz "lowest_priority"
name_nmi:                   .asciz "nmi"
name_timer_oneshot:         .asciz "timer_oneshot"
name_timer_periodic:        .asciz "timer_periodic"
name_timer_tsc_deadline:    .asciz "timer_tsc_deadline"
name_ioapic_level:          .asciz "ioapic_level"
name_directed_eoi:          .asciz "directed_eoi"
name_esr_illegal_vector:    .asciz "esr_illegal_vector"
name_x2apic_switch:         .asciz "x2apic_switch"
name_setup:                 .asciz "setup"

str_pass:           .asciz "PASS"
str_fail:           .asciz "FAIL"
str_skip:           .asciz "SKIP"
str_colon:          .asciz ": "
str_cpu:            .asciz "cpu "
str_expected:       .asciz ": expected "
str_got:            .asciz ", got "
str_timed_out:      .asciz ": timed out, expected at least "
str_checks_eq:      .asciz "checks="
OBJECT(rel_eq)
    .asciz ""
END(rel_eq)
OBJECT(rel_ge)
    .asciz "at least "
END(rel_ge)
OBJECT(rel_le)
    .asciz "at most "
END(rel_le)
OBJECT(rel_lt)
    .asciz "below "
END(rel_lt)
OBJECT(rel_ne)
    .asciz "not "
END(rel_ne)
OBJECT(msg_newline)
    .asciz "\n"
END(msg_newline)
hex_digits:         .ascii "0123456789abcdef"
msg_summary:        .asciz "apic-conformance: "
msg_passed:         .asciz " passed, "
msg_failed:         .asciz " failed, "
msg_skipped:        .asciz " skipped\n"
msg_bad_boot_info:  .asciz "apic-conformance: bad boot-info magic\n"
msg_no_mp:          .asciz "apic-conformance: no usable MP table\n"
msg_bsp_unlisted:   .asciz "apic-conformance: the boot cpu is not in the MP table\n"

    .data
    .p2align 3
OBJECT(current_check)
    .quad name_setup                    /* name of the running check */
END(current_check)
OBJECT(fail_arg)
    .quad -1                            /* printed after `what` when not -1 */
END(fail_arg)
OBJECT(fail_cpu)
    .long -1                            /* printed as "cpu N: " when >= 0 */
END(fail_cpu)

    .bss
    .p2align 3
OBJECT(hook_rec)
    .space 16 * 8                       /* values recorded by interrupt hooks */
END(hook_rec)
fail_what:          .quad 0
fail_want:          .quad 0
fail_got:           .quad 0
fail_rel:           .quad 0
check_list:         .quad 0
check_list_len:     .quad 0
check_list_set:     .long 0
OBJECT(passed)
    .long 0
END(passed)
OBJECT(failed)
    .long 0
END(failed)
OBJECT(skipped)
    .long 0
END(skipped)
OBJECT(cpu_slots)
    .long 0                             /* CPUs in the MP table (at most MAX_TEST_CPUS) */
END(cpu_slots)
OBJECT(bsp_slot)
    .long 0
END(bsp_slot)
OBJECT(online_mask)
    .long 0                             /* bit n: slot n runs (BSP included) */
END(online_mask)
OBJECT(cpuid1_ecx)
    .long 0
END(cpuid1_ecx)
