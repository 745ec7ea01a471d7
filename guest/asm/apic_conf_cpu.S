/*
 * apic_conf_cpu.S: the `apic-conformance` guest's machinery, shared by every
 * check: per-CPU blocks (GS.base), the IDT with its exception, NMI and
 * interrupt entry stubs, the interrupt dispatcher with per-check hooks,
 * local APIC access in xAPIC (MMIO) or x2APIC (MSR) mode, IPIs, IOAPIC and
 * IRQ-test-device access, MSR access that survives a #GP, bounded waits,
 * starting the APs (INIT-SIPI-SIPI: aps.S, trampoline.S), the APs' idle loop
 * with its command mailbox, and the state reset run between checks.
 *
 * Interrupt handling: every vector 32-255 enters irq_common through a
 * 16-byte stub that pushes the vector; irq_dispatch counts the delivery in
 * the CPU's PC_COUNTS, appends the vector to its delivery log (PC_LOG),
 * remembers RFLAGS and the TSC, then calls the check's hook for the vector
 * (irq_hooks) if there is one, which then owns the EOI, or else sends the
 * EOI itself. The spurious vector (0xff) gets no EOI (SDM: a spurious
 * interrupt does not set an ISR bit). NMIs (vector 2) only count. Other
 * exceptions end the guest with a FAIL line, except a #GP with a fixup
 * address armed (msr_read_safe / msr_write_safe).
 */
#include "apic_conformance.h"

    .text
    .code64

/* percpu_of(slot = %edi) -> %rax: the per-CPU block of slot. */
FUNCTION(percpu_of)
    push    %rbp
    mov     %rsp, %rbp
    mov     %edi, %eax
    shl     $12, %rax                   /* PERCPU_SIZE */
    lea     percpu_area(%rip), %rcx
    add     %rcx, %rax
    pop     %rbp
    ret
END(percpu_of)

/* percpu_init_all(n = %edi): fills self, slot and MP-table APIC ID of slots 0..n-1. */
FUNCTION(percpu_init_all)
    push    %rbp
    mov     %rsp, %rbp
    push    %rbx
    push    %r12
    mov     %edi, %r12d
    xor     %ebx, %ebx
1:  cmp     %r12d, %ebx
    jae     2f
    mov     %ebx, %edi
    call    percpu_of
    mov     %rax, PC_SELF(%rax)
    mov     %ebx, PC_SLOT(%rax)
    lea     cpu_apic_ids(%rip), %rcx
    movzbl  (%rcx,%rbx), %ecx
    mov     %ecx, PC_APIC_ID(%rax)
    inc     %ebx
    jmp     1b
2:  pop     %r12
    pop     %rbx
    pop     %rbp
    ret
END(percpu_init_all)

/* slot_of_apic_id(id = %edi) -> %eax: the MP table slot listing id, or -1. */
FUNCTION(slot_of_apic_id)
    push    %rbp
    mov     %rsp, %rbp
    xor     %eax, %eax
    lea     cpu_apic_ids(%rip), %rdx
1:  cmp     cpu_slots(%rip), %eax
    jae     2f
    movzbl  (%rdx,%rax), %ecx
    cmp     %edi, %ecx
    je      3f
    inc     %eax
    jmp     1b
2:  mov     $-1, %eax
3:  pop     %rbp
    ret
END(slot_of_apic_id)

/*
 * cpu_enter(slot = %edi): first steps of every CPU: GS.base = its block,
 * snapshot of the APIC registers as reset/INIT left them, its own view of
 * its IDs, the IDT, and the local APIC software-enabled (spurious vector
 * 0xff) with TPR 0 and LINT0/LINT1/error masked.
 */
FUNCTION(cpu_enter)
    push    %rbp
    mov     %rsp, %rbp
    push    %rbx
    call    percpu_of
    mov     %rax, %rbx
    mov     %rax, %rdx
    shr     $32, %rdx
    mov     $MSR_GS_BASE, %ecx
    wrmsr
    call    reset_snapshot
    mov     $1, %eax
    cpuid
    shr     $24, %ebx
    mov     %ebx, %gs:PC_CPUID_ID
    mov     $APIC_ID, %edi
    call    lapic_read
    shr     $24, %eax
    mov     %eax, %gs:PC_XAPIC_ID
    cmpl    $0, idt_ready(%rip)
    jne     1f
    call    idt_init
1:  lidt    idt_ptr(%rip)
    mov     $APIC_SVR, %edi
    mov     $SVR_ENABLE_SPURIOUS, %esi
    call    lapic_write
    mov     $APIC_TPR, %edi
    xor     %esi, %esi
    call    lapic_write
    mov     $APIC_LVT_LINT0, %edi
    mov     $LVT_MASKED, %esi
    call    lapic_write
    mov     $APIC_LVT_LINT1, %edi
    mov     $LVT_MASKED, %esi
    call    lapic_write
    mov     $APIC_LVT_ERROR, %edi
    mov     $LVT_MASKED, %esi
    call    lapic_write
    pop     %rbx
    pop     %rbp
    ret
END(cpu_enter)

/*
 * reset_snapshot(): stores the registers listed in reset_regs (as far as
 * the version register's max LVT entry says they exist) into PC_RESET, and
 * the version register into its last word.
 */
FUNCTION(reset_snapshot)
    push    %rbp
    mov     %rsp, %rbp
    push    %rbx
    push    %r12
    push    %r13
    mov     $APIC_VERSION, %edi
    call    lapic_read
    mov     %eax, %gs:(PC_RESET + 4 * (RESET_REGS - 1))
    shr     $16, %eax
    movzbl  %al, %r13d                  /* max LVT entry */
    lea     reset_regs(%rip), %rbx
    xor     %r12d, %r12d
1:  cmp     reset_regs_count(%rip), %r12d
    jae     3f
    movzbl  2(%rbx), %eax               /* needs max LVT >= this */
    cmp     %eax, %r13d
    jb      2f
    movzwl  (%rbx), %edi
    call    lapic_read
    mov     %eax, %gs:PC_RESET(,%r12,4)
2:  add     $24, %rbx
    inc     %r12d
    jmp     1b
3:  pop     %r13
    pop     %r12
    pop     %rbx
    pop     %rbp
    ret
END(reset_snapshot)

/* idt_init(): fills the 256 interrupt gates (exception stubs, NMI entry, interrupt stubs). */
FUNCTION(idt_init)
    push    %rbp
    mov     %rsp, %rbp
    lea     idt(%rip), %rdi
    xor     %ecx, %ecx                  /* vector */
1:  cmp     $256, %ecx
    jae     4f
    mov     %ecx, %eax
    shl     $4, %eax
    cmp     $32, %ecx
    jae     2f
    lea     exception_stubs(%rip), %rdx
    add     %rax, %rdx
    cmp     $2, %ecx
    jne     3f
    lea     nmi_entry(%rip), %rdx
    jmp     3f
2:  lea     irq_stubs - 32 * 16(%rip), %rdx
    add     %rax, %rdx
3:  mov     %rdx, %rax                  /* gate low: offset 15:0, selector, type, offset 31:16 */
    and     $0xffff, %eax
    or      $(SEL_CODE64 << 16), %eax
    mov     %rdx, %rsi
    shr     $16, %rsi
    shl     $48, %rsi
    or      %rsi, %rax
    mov     $0x8e00, %esi               /* present, DPL 0, 64-bit interrupt gate */
    shl     $32, %rsi
    or      %rsi, %rax
    mov     %rax, (%rdi)
    shr     $32, %rdx                   /* gate high: offset 63:32 */
    mov     %rdx, 8(%rdi)
    add     $16, %rdi
    inc     %ecx
    jmp     1b
4:  movl    $1, idt_ready(%rip)
    pop     %rbp
    ret
END(idt_init)

/* Exception entries 0-31: 16 bytes each; push a 0 error code where the CPU pushes none. */
FUNCTION(exception_stubs)
    .set    .Lvec, 0
    .rept   32
    .p2align 4
    .if (.Lvec == 8) || ((.Lvec >= 10) && (.Lvec <= 14)) || (.Lvec == 17) || (.Lvec == 21) || (.Lvec == 29) || (.Lvec == 30)
    .else
    pushq   $0
    .endif
    pushq   $.Lvec
    jmp     exception_common
    .set    .Lvec, .Lvec + 1
    .endr
END(exception_stubs)

/* Interrupt entries 32-255: 16 bytes each, push the vector. */
FUNCTION(irq_stubs)
    .set    .Lvec, 32
    .rept   224
    .p2align 4
    pushq   $.Lvec
    jmp     irq_common
    .set    .Lvec, .Lvec + 1
    .endr
END(irq_stubs)

/*
 * exception_common: stack = vector, error code, RIP, CS, RFLAGS, RSP, SS.
 * A #GP with PC_FIXUP armed resumes at the fixup; vector VEC_ILLEGAL while
 * PC_STRAY_OK is set is counted like an interrupt; anything else is fatal.
 */
FUNCTION(exception_common)
    PUSH_SCRATCH
    mov     72(%rsp), %edi              /* vector */
    cmp     $13, %edi
    jne     1f
    mov     %gs:PC_FIXUP, %rax
    test    %rax, %rax
    jz      1f
    mov     %rax, 88(%rsp)              /* resume at the fixup */
    movq    $0, %gs:PC_FIXUP
    incl    %gs:PC_FAULTS
    jmp     3f
1:  cmp     $VEC_ILLEGAL, %edi
    jne     2f
    cmpl    $0, %gs:PC_STRAY_OK
    je      2f
    incl    %gs:PC_COUNTS(,%rdi,4)      /* an interrupt with an illegal vector got through */
    jmp     3f
2:  mov     80(%rsp), %rsi              /* error code */
    mov     88(%rsp), %rdx              /* RIP */
    call    exception_report
3:  POP_SCRATCH
    add     $16, %rsp
    iretq
END(exception_common)

/*
 * exception_report(vector = %edi, error = %rsi, rip = %rdx): prints
 * "FAIL <check>: unexpected exception N (error code 0x..) at RIP 0x.. on cpu S"
 * and exits 255.
 */
FUNCTION(exception_report)
    push    %rbp
    mov     %rsp, %rbp
    push    %rbx
    push    %r12
    push    %r13
    mov     %edi, %ebx
    mov     %rsi, %r12
    mov     %rdx, %r13
    lea     str_fail_exc(%rip), %rdi
    call    report_prefix
    lea     msg_exc1(%rip), %rdi
    call    serial_puts
    mov     %ebx, %edi
    call    print_dec
    lea     msg_exc2(%rip), %rdi
    call    serial_puts
    mov     %r12, %rdi
    call    print_hex
    lea     msg_exc3(%rip), %rdi
    call    serial_puts
    mov     %r13, %rdi
    call    print_hex
    lea     msg_exc4(%rip), %rdi
    call    serial_puts
    mov     %gs:PC_SLOT, %edi
    call    print_dec
    lea     msg_newline(%rip), %rdi
    call    serial_puts
    call    serial_unlock
    mov     $255, %edi
    call    conformance_exit
END(exception_report)

/*
 * conformance_exit(status = %edi): writes status to the debug-exit port with
 * interrupts off, then halts for good: if the VMM lets the vCPU run on for a
 * moment after the write, it runs nothing that could print.
 */
FUNCTION(conformance_exit)
    push    %rbp
    mov     %rsp, %rbp
    cli
    mov     %edi, %eax
    out     %al, $EXIT_PORT
1:  hlt
    jmp     1b
END(conformance_exit)

/* nmi_entry: vector 2. Counts the NMI; no EOI (NMIs do not use the ISR). */
FUNCTION(nmi_entry)
    incl    %gs:PC_NMI_COUNT
    iretq
END(nmi_entry)

/* irq_common: stack = vector, RIP, CS, RFLAGS, RSP, SS. Saves the scratch registers. */
FUNCTION(irq_common)
    PUSH_SCRATCH
    mov     72(%rsp), %edi
    call    irq_dispatch
    POP_SCRATCH
    add     $8, %rsp
    iretq
END(irq_common)

/*
 * irq_dispatch(vector = %edi): counts and logs the delivery, records RFLAGS
 * and the TSC, then runs the vector's hook (hook(vector, count)), which owns
 * the EOI, or sends the EOI itself (none for the spurious vector).
 */
FUNCTION(irq_dispatch)
    push    %rbp
    mov     %rsp, %rbp
    push    %rbx
    push    %r12
    mov     %edi, %ebx
    pushf
    pop     %rax
    mov     %eax, %gs:PC_HANDLER_FLAGS
    rdtsc
    shl     $32, %rdx
    or      %rdx, %rax
    mov     %rax, %gs:PC_LAST_TSC
    incl    %gs:PC_COUNTS(,%rbx,4)
    mov     %ebx, %edi
    call    log_append
    cmp     $VEC_SPURIOUS, %ebx
    je      2f
    lea     irq_hooks(%rip), %rax
    mov     (%rax,%rbx,8), %rax
    test    %rax, %rax
    jz      1f
    mov     %ebx, %edi
    mov     %gs:PC_COUNTS(,%rbx,4), %esi
    call    *%rax
    jmp     2f
1:  call    lapic_eoi
2:  pop     %r12
    pop     %rbx
    pop     %rbp
    ret
END(irq_dispatch)

/* log_append(byte = %edi): appends to this CPU's delivery log (drops past LOG_MAX). */
FUNCTION(log_append)
    push    %rbp
    mov     %rsp, %rbp
    mov     %gs:PC_LOG_LEN, %eax
    cmp     $LOG_MAX, %eax
    jae     1f
    mov     %dil, %gs:PC_LOG(%rax)
    inc     %eax
    mov     %eax, %gs:PC_LOG_LEN
1:  pop     %rbp
    ret
END(log_append)

/*
 * log_compare(seq = %rdi, len = %esi) -> %eax: 0 if this CPU's delivery log
 * equals the len bytes at seq; else 1 with fail_arg = the first differing
 * position, %r8 = the log's byte there, %r9 = seq's (0 past either end).
 */
FUNCTION(log_compare)
    push    %rbp
    mov     %rsp, %rbp
    mov     %gs:PC_LOG_LEN, %r10d
    mov     %esi, %r11d
    mov     %r10d, %edx                 /* compare up to the longer of the two */
    cmp     %r11d, %edx
    jae     1f
    mov     %r11d, %edx
1:  xor     %ecx, %ecx
2:  cmp     %edx, %ecx
    jae     5f
    xor     %r8d, %r8d
    cmp     %r10d, %ecx
    jae     3f
    movzbl  %gs:PC_LOG(%rcx), %r8d
3:  xor     %r9d, %r9d
    cmp     %r11d, %ecx
    jae     4f
    movzbl  (%rdi,%rcx), %r9d
4:  cmp     %r8d, %r9d
    jne     6f
    inc     %ecx
    jmp     2b
5:  xor     %eax, %eax
    pop     %rbp
    ret
6:  mov     %rcx, fail_arg(%rip)
    mov     $1, %eax
    pop     %rbp
    ret
END(log_compare)

/* set_hook(vector = %edi, hook = %rsi): installs a hook for vector (0 removes it). */
FUNCTION(set_hook)
    push    %rbp
    mov     %rsp, %rbp
    lea     irq_hooks(%rip), %rax
    mov     %rsi, (%rax,%rdi,8)
    pop     %rbp
    ret
END(set_hook)

/* lapic_read(offset = %edi) -> %eax: an APIC register, through MMIO or its x2APIC MSR. */
FUNCTION(lapic_read)
    push    %rbp
    mov     %rsp, %rbp
    cmpl    $0, %gs:PC_X2APIC
    jne     1f
    mov     $LAPIC_BASE, %eax
    mov     %edi, %edi
    mov     (%rax,%rdi), %eax
    pop     %rbp
    ret
1:  mov     %edi, %ecx
    shr     $4, %ecx
    add     $MSR_X2APIC_BASE, %ecx
    rdmsr
    pop     %rbp
    ret
END(lapic_read)

/* lapic_write(offset = %edi, value = %esi): writes an APIC register (MMIO or MSR). */
FUNCTION(lapic_write)
    push    %rbp
    mov     %rsp, %rbp
    cmpl    $0, %gs:PC_X2APIC
    jne     1f
    mov     $LAPIC_BASE, %eax
    mov     %edi, %edi
    mov     %esi, (%rax,%rdi)
    pop     %rbp
    ret
1:  mov     %edi, %ecx
    shr     $4, %ecx
    add     $MSR_X2APIC_BASE, %ecx
    mov     %esi, %eax
    xor     %edx, %edx
    wrmsr
    pop     %rbp
    ret
END(lapic_write)

/* lapic_eoi(): signals end of interrupt (write 0 to the EOI register). */
FUNCTION(lapic_eoi)
    push    %rbp
    mov     %rsp, %rbp
    mov     $APIC_EOI, %edi
    xor     %esi, %esi
    call    lapic_write
    pop     %rbp
    ret
END(lapic_eoi)

/* lapic_vector_bit(base = %edi (ISR/TMR/IRR), vector = %esi) -> %eax: that vector's bit. */
FUNCTION(lapic_vector_bit)
    push    %rbp
    mov     %rsp, %rbp
    push    %rbx
    mov     %esi, %ebx
    mov     %esi, %eax
    shr     $5, %eax
    shl     $4, %eax
    add     %eax, %edi
    call    lapic_read
    mov     %ebx, %ecx
    and     $31, %ecx
    shr     %cl, %eax
    and     $1, %eax
    pop     %rbx
    pop     %rbp
    ret
END(lapic_vector_bit)

/* lapic_isr_any() -> %eax: nonzero if any ISR bit is set. */
FUNCTION(lapic_isr_any)
    push    %rbp
    mov     %rsp, %rbp
    push    %rbx
    push    %r12
    xor     %r12d, %r12d
    mov     $APIC_ISR, %ebx
1:  mov     %ebx, %edi
    call    lapic_read
    or      %eax, %r12d
    add     $0x10, %ebx
    cmp     $APIC_ISR + 0x80, %ebx
    jb      1b
    mov     %r12d, %eax
    pop     %r12
    pop     %rbx
    pop     %rbp
    ret
END(lapic_isr_any)

/* eoi_all_in_service(): EOIs until no ISR bit is left (at most 64 times). */
FUNCTION(eoi_all_in_service)
    push    %rbp
    mov     %rsp, %rbp
    push    %rbx
    mov     $64, %ebx
1:  call    lapic_isr_any
    test    %eax, %eax
    jz      2f
    call    lapic_eoi
    dec     %ebx
    jnz     1b
2:  pop     %rbx
    pop     %rbp
    ret
END(eoi_all_in_service)

/*
 * ipi_send(dest = %edi, icr_low = %esi) -> %eax: sends an IPI (x2APIC: one
 * write of the 64-bit ICR; xAPIC: ICR high then low, then a bounded wait
 * for delivery status idle). 0 = sent, 1 = the ICR stayed busy.
 */
FUNCTION(ipi_send)
    push    %rbp
    mov     %rsp, %rbp
    cmpl    $0, %gs:PC_X2APIC
    jne     1f
    call    apic_send_ipi
    pop     %rbp
    ret
1:  mov     %esi, %eax
    mov     %edi, %edx
    mov     $MSR_X2APIC_ICR, %ecx
    wrmsr
    xor     %eax, %eax
    pop     %rbp
    ret
END(ipi_send)

/* ipi_self(vector = %edi): fixed IPI with the self shorthand. */
FUNCTION(ipi_self)
    push    %rbp
    mov     %rsp, %rbp
    mov     %edi, %esi
    or      $ICR_SELF, %esi
    xor     %edi, %edi
    call    ipi_send
    pop     %rbp
    ret
END(ipi_self)

/* tsc_now() -> %rax: the time-stamp counter. */
FUNCTION(tsc_now)
    push    %rbp
    mov     %rsp, %rbp
    rdtsc
    shl     $32, %rdx
    or      %rdx, %rax
    pop     %rbp
    ret
END(tsc_now)

/*
 * wait_u32(ptr = %rdi, target = %esi, ticks = %rdx) -> %eax: spins until the
 * u32 at ptr is >= target or ticks TSC ticks passed; returns its last value.
 */
FUNCTION(wait_u32)
    push    %rbp
    mov     %rsp, %rbp
    push    %rbx
    mov     %rdx, %rbx
    rdtsc
    shl     $32, %rdx
    or      %rdx, %rax
    add     %rax, %rbx                  /* deadline */
1:  mov     (%rdi), %eax
    cmp     %esi, %eax
    jae     2f
    pause
    rdtsc
    shl     $32, %rdx
    or      %rdx, %rax
    cmp     %rbx, %rax
    jb      1b
2:  mov     (%rdi), %eax
    pop     %rbx
    pop     %rbp
    ret
END(wait_u32)

/* spin_ticks(ticks = %rdi): busy-waits ticks TSC ticks (interrupts as they are). */
FUNCTION(spin_ticks)
    push    %rbp
    mov     %rsp, %rbp
    push    %rbx
    mov     %rdi, %rbx
    rdtsc
    shl     $32, %rdx
    or      %rdx, %rax
    add     %rax, %rbx
1:  pause
    rdtsc
    shl     $32, %rdx
    or      %rdx, %rax
    cmp     %rbx, %rax
    jb      1b
    pop     %rbx
    pop     %rbp
    ret
END(spin_ticks)

/* settle(): spins SETTLE_TICKS so that late or stray deliveries show before counting. */
FUNCTION(settle)
    push    %rbp
    mov     %rsp, %rbp
    mov     $SETTLE_TICKS, %edi
    call    spin_ticks
    pop     %rbp
    ret
END(settle)

/* msr_read(msr = %edi) -> %rax. */
FUNCTION(msr_read)
    push    %rbp
    mov     %rsp, %rbp
    mov     %edi, %ecx
    rdmsr
    shl     $32, %rdx
    or      %rdx, %rax
    pop     %rbp
    ret
END(msr_read)

/* msr_write(msr = %edi, value = %rsi). */
FUNCTION(msr_write)
    push    %rbp
    mov     %rsp, %rbp
    mov     %edi, %ecx
    mov     %esi, %eax
    mov     %rsi, %rdx
    shr     $32, %rdx
    wrmsr
    pop     %rbp
    ret
END(msr_write)

/* msr_read_safe(msr = %edi) -> %rax value, %edx 1 if RDMSR raised #GP (then %rax = 0). */
FUNCTION(msr_read_safe)
    push    %rbp
    mov     %rsp, %rbp
    lea     1f(%rip), %rax
    mov     %rax, %gs:PC_FIXUP
    mov     %edi, %ecx
    rdmsr
    movq    $0, %gs:PC_FIXUP
    shl     $32, %rdx
    or      %rdx, %rax
    xor     %edx, %edx
    pop     %rbp
    ret
1:  xor     %eax, %eax
    mov     $1, %edx
    pop     %rbp
    ret
END(msr_read_safe)

/* msr_write_safe(msr = %edi, value = %rsi) -> %eax: 1 if WRMSR raised #GP, else 0. */
FUNCTION(msr_write_safe)
    push    %rbp
    mov     %rsp, %rbp
    lea     1f(%rip), %rax
    mov     %rax, %gs:PC_FIXUP
    mov     %edi, %ecx
    mov     %esi, %eax
    mov     %rsi, %rdx
    shr     $32, %rdx
    wrmsr
    movq    $0, %gs:PC_FIXUP
    xor     %eax, %eax
    pop     %rbp
    ret
1:  mov     $1, %eax
    pop     %rbp
    ret
END(msr_write_safe)

/* ioapic_read(reg = %edi) -> %eax: IOREGSEL = reg, then read IOWIN (interrupts held off). */
FUNCTION(ioapic_read)
    push    %rbp
    mov     %rsp, %rbp
    pushf
    cli
    mov     $IOAPIC_BASE, %edx
    mov     %edi, IOAPIC_REGSEL(%rdx)
    mov     IOAPIC_WIN(%rdx), %eax
    popf
    pop     %rbp
    ret
END(ioapic_read)

/* ioapic_write(reg = %edi, value = %esi). */
FUNCTION(ioapic_write)
    push    %rbp
    mov     %rsp, %rbp
    pushf
    cli
    mov     $IOAPIC_BASE, %edx
    mov     %edi, IOAPIC_REGSEL(%rdx)
    mov     %esi, IOAPIC_WIN(%rdx)
    popf
    pop     %rbp
    ret
END(ioapic_write)

/* ioapic_set_redir(pin = %edi, low = %esi, high = %edx): writes the high half, then the low. */
FUNCTION(ioapic_set_redir)
    push    %rbp
    mov     %rsp, %rbp
    push    %rbx
    push    %r12
    lea     IOAPIC_REG_REDIR(,%rdi,2), %ebx
    mov     %esi, %r12d
    lea     1(%rbx), %edi
    mov     %edx, %esi
    call    ioapic_write
    mov     %ebx, %edi
    mov     %r12d, %esi
    call    ioapic_write
    pop     %r12
    pop     %rbx
    pop     %rbp
    ret
END(ioapic_set_redir)

/* ioapic_redir_low(pin = %edi) -> %eax: low half of the pin's redirection entry. */
FUNCTION(ioapic_redir_low)
    push    %rbp
    mov     %rsp, %rbp
    lea     IOAPIC_REG_REDIR(,%rdi,2), %edi
    call    ioapic_read
    pop     %rbp
    ret
END(ioapic_redir_low)

/* ioapic_remote_irr(pin = %edi) -> %eax: the entry's remote IRR bit (0 or 1). */
FUNCTION(ioapic_remote_irr)
    push    %rbp
    mov     %rsp, %rbp
    call    ioapic_redir_low
    shr     $14, %eax
    and     $1, %eax
    pop     %rbp
    ret
END(ioapic_remote_irr)

/* ioapic_eoi(vector = %edi): writes vector to the IOAPIC EOI register (version >= 0x20). */
FUNCTION(ioapic_eoi)
    push    %rbp
    mov     %rsp, %rbp
    mov     $IOAPIC_BASE, %edx
    mov     %edi, IOAPIC_EOI(%rdx)
    pop     %rbp
    ret
END(ioapic_eoi)

/* irq_line(pin = %edi, level = %esi): drives line pin through the IRQ test device. */
FUNCTION(irq_line)
    push    %rbp
    mov     %rsp, %rbp
    lea     TESTDEV_IRQ_PORT(%rdi), %edx
    mov     %esi, %eax
    out     %al, %dx
    pop     %rbp
    ret
END(irq_line)

/*
 * start_all_aps(): starts each AP slot in turn with INIT, SIPI, SIPI
 * (start_aps_listed, aps.S: the AP finds its slot in ap_boot_slot) and
 * waits for it to reach its idle loop; adds the slots that came online to
 * online_mask. Stops at the first AP that does not come online
 * (ap_ipi_busy = 1 if an INIT or SIPI stayed busy in the ICR).
 */
FUNCTION(start_all_aps)
    push    %rbp
    mov     %rsp, %rbp
    lea     cpu_apic_ids(%rip), %rdi
    mov     cpu_slots(%rip), %esi
    lea     ap_stacks(%rip), %rdx
    mov     $TEST_STACK_SHIFT, %ecx
    call    start_aps_listed
    cmp     $EXIT_IPI_TIMEOUT, %eax
    jne     1f
    movl    $1, ap_ipi_busy(%rip)
1:  mov     %edx, %ecx                  /* slots below the one that failed are online */
    mov     $1, %eax
    shl     %cl, %eax
    dec     %eax
    or      %eax, online_mask(%rip)
    pop     %rbp
    ret
END(start_all_aps)

/*
 * ap_main(): an AP's 64-bit entry (called by trampoline.S's
 * ap_long_mode_entry): sets itself up like the BSP, counts itself online and
 * idles. Never returns.
 */
FUNCTION(ap_main)
    push    %rbp
    mov     %rsp, %rbp
    mov     ap_boot_slot(%rip), %edi
    call    cpu_enter
    movl    $1, %gs:PC_ONLINE
    lock incl cpus_online(%rip)
    call    ap_idle
END(ap_main)

/*
 * ap_idle(): with interrupts off, runs a posted command if there is one;
 * otherwise `sti; hlt` (the STI shadow keeps a wake-up IPI from slipping in
 * between the check and the halt). Never returns.
 */
FUNCTION(ap_idle)
    push    %rbp
    mov     %rsp, %rbp
1:  cli
    cmpl    $0, %gs:PC_CMD
    jne     2f
    sti
    hlt
    jmp     1b
2:  call    ap_run_command
    jmp     1b
END(ap_idle)

/* ap_run_command(): runs PC_CMD, stores PC_CMD_RESULT, then clears PC_CMD and sets PC_CMD_DONE. */
FUNCTION(ap_run_command)
    push    %rbp
    mov     %rsp, %rbp
    mov     %gs:PC_CMD, %eax
    cmp     $CMD_WRITE, %eax
    jne     1f
    mov     %gs:PC_CMD_ARG0, %edi
    mov     %gs:PC_CMD_ARG1, %esi
    call    lapic_write
    xor     %eax, %eax
    jmp     3f
1:  cmp     $CMD_READ, %eax
    jne     2f
    mov     %gs:PC_CMD_ARG0, %edi
    call    lapic_read
    jmp     3f
2:  mov     $-1, %eax
3:  mov     %eax, %gs:PC_CMD_RESULT
    movl    $0, %gs:PC_CMD
    movl    $1, %gs:PC_CMD_DONE
    pop     %rbp
    ret
END(ap_run_command)

/*
 * ap_command(slot = %edi, cmd = %esi, arg0 = %edx, arg1 = %ecx) -> %eax
 * result, %edx 0, or %edx 1 if the AP did not answer within WAIT_TICKS.
 * Posts the command in the AP's block and wakes it with VEC_CMD.
 */
FUNCTION(ap_command)
    push    %rbp
    mov     %rsp, %rbp
    push    %rbx
    push    %r12
    mov     %esi, %r12d
    mov     %edx, %esi
    mov     %ecx, %r8d
    mov     %esi, %r9d
    call    percpu_of
    mov     %rax, %rbx
    movl    $0, PC_CMD_DONE(%rbx)
    mov     %r9d, PC_CMD_ARG0(%rbx)
    mov     %r8d, PC_CMD_ARG1(%rbx)
    mov     %r12d, PC_CMD(%rbx)
    mov     PC_APIC_ID(%rbx), %edi
    mov     $VEC_CMD, %esi
    call    ipi_send
    lea     PC_CMD_DONE(%rbx), %rdi
    mov     $1, %esi
    mov     $WAIT_TICKS, %edx
    call    wait_u32
    test    %eax, %eax
    jz      1f
    mov     PC_CMD_RESULT(%rbx), %eax
    xor     %edx, %edx
    jmp     2f
1:  mov     $1, %edx
2:  pop     %r12
    pop     %rbx
    pop     %rbp
    ret
END(ap_command)

/*
 * cpu_write(slot = %edi, offset = %esi, value = %edx) -> %eax: writes an
 * APIC register of any CPU (the BSP's directly, an AP's by command).
 * 0 = done; 1 = the AP did not answer (fail_cpu is set to the slot).
 */
FUNCTION(cpu_write)
    push    %rbp
    mov     %rsp, %rbp
    push    %rbx
    mov     %edi, %ebx
    cmp     bsp_slot(%rip), %edi
    jne     1f
    mov     %esi, %edi
    mov     %edx, %esi
    call    lapic_write
    xor     %eax, %eax
    jmp     3f
1:  mov     %edx, %ecx
    mov     %esi, %edx
    mov     $CMD_WRITE, %esi
    call    ap_command
    mov     %edx, %eax
    test    %eax, %eax
    jz      3f
    mov     %ebx, fail_cpu(%rip)
3:  pop     %rbx
    pop     %rbp
    ret
END(cpu_write)

/* cpu_read(slot = %edi, offset = %esi) -> %eax value, %edx 1 if the AP did not answer. */
FUNCTION(cpu_read)
    push    %rbp
    mov     %rsp, %rbp
    push    %rbx
    mov     %edi, %ebx
    cmp     bsp_slot(%rip), %edi
    jne     1f
    mov     %esi, %edi
    call    lapic_read
    xor     %edx, %edx
    jmp     3f
1:  mov     %esi, %edx
    mov     $CMD_READ, %esi
    call    ap_command
    test    %edx, %edx
    jz      3f
    mov     %ebx, fail_cpu(%rip)
3:  pop     %rbx
    pop     %rbp
    ret
END(cpu_read)

/* zero_counts_all(): zeroes every started CPU's counters, log, NMI and fault counts. */
FUNCTION(zero_counts_all)
    push    %rbp
    mov     %rsp, %rbp
    push    %rbx
    xor     %ebx, %ebx
1:  cmp     cpu_slots(%rip), %ebx
    jae     3f
    mov     %ebx, %edi
    call    percpu_of
    movl    $0, PC_LOG_LEN(%rax)
    movl    $0, PC_NMI_COUNT(%rax)
    movl    $0, PC_FAULTS(%rax)
    lea     PC_COUNTS(%rax), %rdi
    ZERO_QWORDS 128
    inc     %ebx
    jmp     1b
3:  pop     %rbx
    pop     %rbp
    ret
END(zero_counts_all)

/*
 * verify_delivery(vector = %edi, mask = %esi) -> %eax: 0 when every online
 * CPU took `vector` exactly once if its slot bit is in mask and never
 * otherwise. Waits (bounded) for the expected ones, then settles. On a
 * mismatch returns 1 with fail_cpu = the slot, %r8 = its count, %r9 = wanted.
 */
FUNCTION(verify_delivery)
    push    %rbp
    mov     %rsp, %rbp
    push    %rbx
    push    %r12
    push    %r13
    mov     %edi, %r12d
    mov     %esi, %r13d
    and     online_mask(%rip), %r13d
    xor     %ebx, %ebx
1:  cmp     cpu_slots(%rip), %ebx
    jae     2f
    bt      %ebx, %r13d
    jnc     5f
    mov     %ebx, %edi
    call    percpu_of
    lea     PC_COUNTS(%rax,%r12,4), %rdi
    mov     $1, %esi
    mov     $WAIT_TICKS, %edx
    call    wait_u32
5:  inc     %ebx
    jmp     1b
2:  call    settle
    xor     %ebx, %ebx
3:  ONLINE_SLOT %ebx, 4f, 6f
    mov     %ebx, %edi
    call    percpu_of
    mov     PC_COUNTS(%rax,%r12,4), %r8d
    xor     %r9d, %r9d
    bt      %ebx, %r13d
    adc     $0, %r9d
    cmp     %r9d, %r8d
    je      6f
    mov     %ebx, fail_cpu(%rip)
    mov     $1, %eax
    jmp     7f
6:  inc     %ebx
    jmp     3b
4:  xor     %eax, %eax
7:  pop     %r13
    pop     %r12
    pop     %rbx
    pop     %rbp
    ret
END(verify_delivery)

/*
 * apic_restore_xapic(): puts this CPU's APIC back in xAPIC mode through the
 * legal path (x2APIC -> disabled -> xAPIC) if a check left it elsewhere.
 */
FUNCTION(apic_restore_xapic)
    push    %rbp
    mov     %rsp, %rbp
    push    %rbx
    mov     $MSR_APIC_BASE, %edi
    call    msr_read
    mov     %rax, %rbx
    and     $(APIC_BASE_EN | APIC_BASE_EXTD), %eax
    cmp     $APIC_BASE_EN, %eax
    je      2f
    test    $APIC_BASE_EXTD, %ebx
    jz      1f
    mov     $MSR_APIC_BASE, %edi
    mov     %rbx, %rsi
    and     $~(APIC_BASE_EN | APIC_BASE_EXTD), %rsi
    call    msr_write_safe
1:  mov     $MSR_APIC_BASE, %edi
    mov     %rbx, %rsi
    and     $~APIC_BASE_EXTD, %rsi
    or      $APIC_BASE_EN, %rsi
    call    msr_write_safe
2:  movl    $0, %gs:PC_X2APIC
    pop     %rbx
    pop     %rbp
    ret
END(apic_restore_xapic)

/*
 * cleanup_check(): after each check, on the BSP: interrupts off, no hooks,
 * xAPIC mode, timer stopped, LVT error masked, TPR 0, SVR 0x1ff, flat
 * logical mode with LDR 0, the test IOAPIC pins masked and their lines low,
 * nothing in service, pending interrupts drained; the APs' TPR, DFR and LDR
 * restored if the check touched them; ESR cleared.
 */
FUNCTION(cleanup_check)
    push    %rbp
    mov     %rsp, %rbp
    push    %rbx
    cli
    lea     irq_hooks(%rip), %rdi
    ZERO_QWORDS 256
    movl    $0, %gs:PC_STRAY_OK
    movq    $0, %gs:PC_FIXUP
    call    apic_restore_xapic
    mov     $APIC_LVT_TIMER, %edi
    mov     $LVT_MASKED, %esi
    call    lapic_write
    mov     $APIC_TIMER_ICR, %edi
    xor     %esi, %esi
    call    lapic_write
    testl   $CPUID1_ECX_TSC_DL, cpuid1_ecx(%rip)
    jz      2f
    mov     $MSR_TSC_DEADLINE, %edi
    xor     %esi, %esi
    call    msr_write_safe
2:  mov     $APIC_LVT_ERROR, %edi
    mov     $LVT_MASKED, %esi
    call    lapic_write
    mov     $APIC_TPR, %edi
    xor     %esi, %esi
    call    lapic_write
    mov     $APIC_SVR, %edi
    mov     $SVR_ENABLE_SPURIOUS, %esi
    call    lapic_write
    mov     $APIC_DFR, %edi
    mov     $DFR_FLAT, %esi
    call    lapic_write
    mov     $APIC_LDR, %edi
    xor     %esi, %esi
    call    lapic_write
    mov     $PIN_LEVEL, %edi
    xor     %esi, %esi
    call    irq_line
    mov     $PIN_DIRECTED, %edi
    xor     %esi, %esi
    call    irq_line
    mov     $PIN_LEVEL, %edi
    mov     $REDIR_MASKED, %esi
    xor     %edx, %edx
    call    ioapic_set_redir
    mov     $PIN_DIRECTED, %edi
    mov     $REDIR_MASKED, %esi
    xor     %edx, %edx
    call    ioapic_set_redir
    call    eoi_all_in_service
    sti
    call    settle
    cli
    call    eoi_all_in_service
    cmpl    $0, aps_dirty(%rip)
    je      4f
    xor     %ebx, %ebx
3:  ONLINE_SLOT %ebx, 5f, 6f
    cmp     bsp_slot(%rip), %ebx
    je      6f
    mov     %ebx, %edi
    mov     $APIC_TPR, %esi
    xor     %edx, %edx
    call    cpu_write
    mov     %ebx, %edi
    mov     $APIC_DFR, %esi
    mov     $DFR_FLAT, %edx
    call    cpu_write
    mov     %ebx, %edi
    mov     $APIC_LDR, %esi
    xor     %edx, %edx
    call    cpu_write
6:  inc     %ebx
    jmp     3b
5:  movl    $0, aps_dirty(%rip)
4:  mov     $APIC_ESR, %edi
    xor     %esi, %esi
    call    lapic_write
    mov     $APIC_ESR, %edi
    xor     %esi, %esi
    call    lapic_write
    pop     %rbx
    pop     %rbp
    ret
END(cleanup_check)

    .section .rodata
str_fail_exc:   .asciz "FAIL"
msg_exc1:       .asciz ": unexpected exception "
msg_exc2:       .asciz " (error code "
msg_exc3:       .asciz ") at RIP "
msg_exc4:       .asciz " on cpu "

    .data
    .p2align 3
idt_ptr:
    .word 256 * 16 - 1
    .quad idt

    .bss
    .p2align 12
OBJECT(percpu_area)
    .space MAX_TEST_CPUS * PERCPU_SIZE
END(percpu_area)
OBJECT(idt)
    .space 256 * 16
END(idt)
OBJECT(ap_stacks)
    .space MAX_TEST_CPUS * AP_STACK_SIZE /* stack of slot n ends at ap_stacks + (n + 1) * size */
END(ap_stacks)
    .p2align 3
OBJECT(irq_hooks)
    .space 256 * 8                      /* per vector: hook(vector, count) or 0 */
END(irq_hooks)
OBJECT(aps_dirty)
    .long 0                             /* 1: the check changed APs' TPR/DFR/LDR */
END(aps_dirty)
OBJECT(ap_ipi_busy)
    .long 0                             /* 1: an INIT/SIPI stayed busy in the ICR */
END(ap_ipi_busy)
idt_ready:
    .long 0
