/*
 * apic_conformance.h: constants, per-CPU layout and check macros of the
 * `apic-conformance` guest (apic_conformance.S and apic_conf_*.S).
 *
 * Included after common.h. Holds no code outside macros.
 */
#ifndef GUEST_APIC_CONFORMANCE_H
#define GUEST_APIC_CONFORMANCE_H

#include "common.h"

/* How many CPUs the guest starts and checks (slots = MP table order). */
#define MAX_TEST_CPUS       8
#define TEST_STACK_SHIFT    14          /* 16 KiB per AP */
#define AP_STACK_SIZE       (1 << TEST_STACK_SHIFT)
#define PERCPU_SIZE         4096

/* Local APIC registers: xAPIC MMIO offsets; the x2APIC MSR is 0x800 + (offset >> 4). */
#define APIC_ID             0x20
#define APIC_VERSION        0x30
#define APIC_TPR            0x80
#define APIC_APR            0x90
#define APIC_PPR            0xa0
#define APIC_EOI            0xb0
#define APIC_LDR            0xd0
#define APIC_DFR            0xe0
#define APIC_SVR            0xf0
#define APIC_ISR            0x100
#define APIC_TMR            0x180
#define APIC_IRR            0x200
#define APIC_ESR            0x280
#define APIC_LVT_CMCI       0x2f0
#define APIC_ICR_LO         0x300
#define APIC_ICR_HI         0x310
#define APIC_LVT_TIMER      0x320
#define APIC_LVT_THERMAL    0x330
#define APIC_LVT_PERF       0x340
#define APIC_LVT_LINT0      0x350
#define APIC_LVT_LINT1      0x360
#define APIC_LVT_ERROR      0x370
#define APIC_TIMER_ICR      0x380
#define APIC_TIMER_CCR      0x390
#define APIC_TIMER_DCR      0x3e0

/* MSRs. */
#define MSR_APIC_BASE       0x1b
#define MSR_TSC_DEADLINE    0x6e0
#define MSR_GS_BASE         0xc0000101
#define MSR_X2APIC_BASE     0x800
#define MSR_X2APIC_ID       0x802
#define MSR_X2APIC_VERSION  0x803
#define MSR_X2APIC_TPR      0x808
#define MSR_X2APIC_PPR      0x80a
#define MSR_X2APIC_EOI      0x80b
#define MSR_X2APIC_LDR      0x80d
#define MSR_X2APIC_DFR      0x80e
#define MSR_X2APIC_SVR      0x80f
#define MSR_X2APIC_ICR      0x830
#define MSR_X2APIC_SELF_IPI 0x83f
#define APIC_BASE_BSP       0x100
#define APIC_BASE_EXTD      0x400
#define APIC_BASE_EN        0x800

/* Register fields. */
#define SVR_APIC_ENABLE     0x100
#define SVR_SUPPRESS_EOI    0x1000
#define VERSION_EOI_SUPPRESS (1 << 24)
#define LVT_MASKED          0x10000
#define LVT_TIMER_PERIODIC  0x20000
#define LVT_TIMER_TSC_DL    0x40000
#define ICR_LOGICAL         0x800
#define ICR_LEVEL_ASSERT    0x4000
#define ICR_MODE_LOWEST     0x100
#define ICR_MODE_NMI        0x400
#define ICR_SELF            0x40000
#define ICR_ALL_INCL        0x80000
#define ICR_ALL_EXCL        0xc0000
#define ESR_SEND_ILLEGAL    0x20
#define DFR_FLAT            0xffffffff
#define DFR_CLUSTER         0x0fffffff
#define DCR_DIV1            0x0b
#define DCR_DIV16           0x03

/* CPUID.1:ECX feature bits. */
#define CPUID1_ECX_X2APIC   (1 << 21)
#define CPUID1_ECX_TSC_DL   (1 << 24)

/* IOAPIC (MMIO) and the IRQ test device (a write of v to 0x2000 + n sets line n to v != 0). */
#define IOAPIC_BASE         0xfec00000
#define IOAPIC_REGSEL       0x00
#define IOAPIC_WIN          0x10
#define IOAPIC_EOI          0x40
#define IOAPIC_REG_VERSION  0x01
#define IOAPIC_REG_REDIR    0x10
#define REDIR_LEVEL         0x8000
#define REDIR_REMOTE_IRR    0x4000
#define REDIR_MASKED        0x10000
#define TESTDEV_IRQ_PORT    0x2000
#define PIN_LEVEL           10
#define PIN_DIRECTED        11

/* Vectors. A vector's priority class is vector >> 4. */
#define VEC_SPURIOUS        0xff
#define VEC_CMD             0xee        /* wakes an AP to run a command */
#define VEC_RETURN          0x51
#define VEC_ORDER_LOW       0x41
#define VEC_ORDER_LOW2      0x4a
#define VEC_ORDER_MID       0x61
#define VEC_ORDER_HIGH      0x81
#define VEC_TPR             0x45
#define VEC_CR8             0x61
#define VEC_PPR             0x65
#define VEC_NEST_LOW        0x51
#define VEC_NEST_SAME       0x5f
#define VEC_NEST_LOWER      0x31
#define VEC_NEST_HIGH       0x91
#define VEC_EARLY_EOI       0x71
#define VEC_SELF            0x52
#define VEC_READONLY        0x53
#define VEC_SHORTHAND       0xa1
#define VEC_FLAT            0xa2
#define VEC_CLUSTER         0xa3
#define VEC_LOWEST          0xb1
#define VEC_TIMER_ONESHOT   0xc1
#define VEC_TIMER_PERIODIC  0xc2
#define VEC_TIMER_DEADLINE  0xc3
#define VEC_IOAPIC_LEVEL    0x62
#define VEC_IOAPIC_DIRECTED 0x63
#define VEC_X2APIC_SELF     0xd1
#define VEC_X2APIC_ICR      0xd2
#define VEC_X2APIC_PHYS     0xd3
#define VEC_X2APIC_BACK     0xd4
#define VEC_ILLEGAL         0x05
#define VEC_LVT_ERROR       0xe9

/* Markers written into a CPU's delivery log by handlers (never valid vectors). */
#define MARK_NESTED_DONE    0x01
#define MARK_EARLY_EOI_DONE 0x02

/* Per-CPU block, found through GS.base (one PERCPU_SIZE block per slot). */
#define PC_SELF             0x00    /* q: the block's own address */
#define PC_SLOT             0x08    /* l: index in the MP table */
#define PC_APIC_ID          0x0c    /* l: APIC ID from the MP table */
#define PC_X2APIC           0x10    /* l: 1 while this CPU's APIC is in x2APIC mode */
#define PC_ONLINE           0x14    /* l: 1 once the CPU runs its idle loop */
#define PC_NMI_COUNT        0x18    /* l: NMIs taken */
#define PC_FAULTS           0x1c    /* l: #GPs recovered through PC_FIXUP */
#define PC_FIXUP            0x20    /* q: where a #GP resumes (0: a #GP is fatal) */
#define PC_STRAY_OK         0x28    /* l: 1: count vectors 0-31 without error code, don't die */
#define PC_LOG_LEN          0x2c    /* l: bytes in PC_LOG */
#define PC_HANDLER_FLAGS    0x30    /* l: RFLAGS inside the last interrupt handler */
#define PC_CMD              0x34    /* l: command posted by the BSP (0: none) */
#define PC_CMD_DONE         0x38    /* l: 1 once the command ran */
#define PC_CMD_ARG0         0x3c    /* l */
#define PC_CMD_ARG1         0x40    /* l */
#define PC_CMD_RESULT       0x44    /* l */
#define PC_CPUID_ID         0x48    /* l: CPUID.1:EBX[31:24] read by the CPU itself */
#define PC_XAPIC_ID         0x4c    /* l: ID register bits 31:24 read by the CPU itself */
#define PC_LAST_TSC         0x50    /* q: TSC at the last interrupt handler's entry */
#define PC_RESET            0x80    /* l[RESET_REGS]: register values before any setup */
#define PC_LOG              0x100   /* b[LOG_MAX]: vectors in delivery order, and markers */
#define PC_COUNTS           0x200   /* l[256]: deliveries per vector (and NMIs: PC_NMI_COUNT) */
#define LOG_MAX             255
#define RESET_REGS          16

/* AP commands (PC_CMD). */
#define CMD_WRITE           1       /* lapic_write(arg0, arg1) */
#define CMD_READ            2       /* result = lapic_read(arg0) */

/* Check results (returned in %eax by a check function). */
#define RESULT_PASS         0
#define RESULT_FAIL         1
#define RESULT_SKIP         2

/*
 * Waits, in TSC ticks (this host's TSC runs at about 2.6 GHz; a faster one only
 * shortens them). WAIT bounds a wait for something that must happen (long, as a
 * vCPU of a loaded host can be preempted for a while; only a failing check
 * waits that long); SETTLE is how long a check lets stray or late deliveries
 * show before counting.
 */
#define WAIT_TICKS          2000000000
#define SETTLE_TICKS        2000000
#define TIMER_ONESHOT_COUNT 1000000     /* with divide by 16: 16 ms at a 1 GHz APIC clock */
#define TIMER_LONG_COUNT    0xfffffff0  /* with divide by 16: about a minute at 1 GHz */
#define TIMER_PERIOD_COUNT  500000      /* with divide by 1: 0.5 ms at 1 GHz */
#define TIMER_PERIODS       3
#define DEADLINE_TICKS      20000000    /* TSC-deadline distance, about 8 ms */
#define TSC_FAR_AHEAD       0x10000000000 /* a TSC-deadline distance of minutes */

/*
 * Check functions: CHECK_ENTER builds the frame every check uses (rbp, then
 * rbx, r12-r15) so that check_return, check_fail_* and check_skip can unwind
 * it from anywhere in the check. Checks must leave %rbp alone and must not
 * pass %r10/%r11 to the EXPECT macros.
 */
#define CHECK_ENTER push %rbp; mov %rsp, %rbp; push %rbx; push %r12; push %r13; push %r14; push %r15
#define CHECK_PASS  xor %eax, %eax; jmp check_return

/* Defines the string `text` in .rodata under the local label .Lstr\@ of the expanding macro. */
.macro DEFINE_STR label:req, text:req
    .pushsection .rodata.str1.1, "aMS", @progbits, 1
\label: .asciz "\text"
    .popsection
.endm

/* FAIL_CMP what, want, got, rel: jumps to check_fail_cmp(what, want, got, relation). */
.macro FAIL_CMP what:req, want:req, got:req, rel:req
    lea     \what(%rip), %rdi
    mov     \want, %rsi
    mov     \got, %rdx
    lea     \rel(%rip), %rcx
    jmp     check_fail_cmp
.endm

/*
 * EXPECT_CMP got, want, what, jok, rel[, gotreg, wantreg]: fails the check
 * ("what: expected <rel><want>, got <got>") unless `cmp want, got` makes jok
 * jump; compares in %r11d/%r10d (32-bit) unless other registers are given.
 */
.macro EXPECT_CMP got:req, want:req, what:req, jok:req, rel:req, gotreg=%r11d, wantreg=%r10d
    DEFINE_STR .Lwhat\@, "\what"
    mov     \got, \gotreg
    mov     \want, \wantreg
    cmp     \wantreg, \gotreg
    \jok     .Lok\@
    FAIL_CMP .Lwhat\@, %r10, %r11, \rel
.Lok\@:
.endm

/* Fails unless got == want (32-bit). */
.macro EXPECT_EQ got:req, want:req, what:req
    EXPECT_CMP \got, \want, "\what", je, rel_eq
.endm

/* 64-bit EXPECT_EQ. */
.macro EXPECT_EQ64 got:req, want:req, what:req
    EXPECT_CMP \got, \want, "\what", je, rel_eq, %r11, %r10
.endm

/* Fails unless got >= want (unsigned, 32-bit). */
.macro EXPECT_GE got:req, want:req, what:req
    EXPECT_CMP \got, \want, "\what", jae, rel_ge
.endm

/* 64-bit EXPECT_GE. */
.macro EXPECT_GE64 got:req, want:req, what:req
    EXPECT_CMP \got, \want, "\what", jae, rel_ge, %r11, %r10
.endm

/* Fails unless got <= want (unsigned, 32-bit). */
.macro EXPECT_LE got:req, want:req, what:req
    EXPECT_CMP \got, \want, "\what", jbe, rel_le
.endm

/* Fails unless got < want (unsigned, 32-bit). */
.macro EXPECT_LT got:req, want:req, what:req
    EXPECT_CMP \got, \want, "\what", jb, rel_lt
.endm

/* Fails unless got (32-bit) is not zero ("expected not 0x0"). */
.macro EXPECT_NZ got:req, what:req
    EXPECT_CMP \got, $0, "\what", jne, rel_ne
.endm

/* Fails unless bit `vector` of the APIC's 256-bit register `reg` (APIC_IRR, _ISR, _TMR) is `want`. */
.macro EXPECT_VECTOR_BIT reg:req, vector:req, want:req, what:req
    mov     $\reg, %edi
    mov     $\vector, %esi
    call    lapic_vector_bit
    EXPECT_EQ %eax, $\want, "\what"
.endm

/* Fails the check with a fixed message. */
.macro FAIL_MSG text:req
    DEFINE_STR .Ltext\@, "\text"
    lea     .Ltext\@(%rip), %rdi
    jmp     check_fail_text
.endm

/* Skips the check with a reason. */
.macro SKIP_MSG text:req
    DEFINE_STR .Ltext\@, "\text"
    lea     .Ltext\@(%rip), %rdi
    jmp     check_skip
.endm

/*
 * Waits (bounded by WAIT_TICKS) until this CPU has taken `target` interrupts
 * on `vector`; fails with "what: timed out, expected at least ..., got ..." if not.
 */
.macro WAIT_COUNT vector:req, target:req, what:req
    DEFINE_STR .Lwhat\@, "\what"
    mov     %gs:PC_SELF, %rdi
    add     $(PC_COUNTS + 4 * (\vector)), %rdi
    mov     $(\target), %esi
    mov     $WAIT_TICKS, %rdx
    call    wait_u32
    cmp     $(\target), %eax
    jae     .Lok\@
    lea     .Lwhat\@(%rip), %rdi
    mov     $(\target), %esi
    mov     %eax, %edx
    jmp     check_fail_timeout
.Lok\@:
.endm

/*
 * ONLINE_SLOT slot, done, skip: heads a loop over the slots: jumps to done
 * once slot reaches cpu_slots, to skip if that CPU is not online (clobbers %eax).
 */
.macro ONLINE_SLOT slot:req, done:req, skip:req
    cmp     cpu_slots(%rip), \slot
    jae     \done
    mov     online_mask(%rip), %eax
    bt      \slot, %eax
    jnc     \skip
.endm

/* ZERO_QWORDS count: zeroes count u64s from %rdi on (clobbers %rdi, %ecx). */
.macro ZERO_QWORDS count:req
    mov     $(\count), %ecx
70: movq    $0, (%rdi)
    add     $8, %rdi
    dec     %ecx
    jnz     70b
.endm

/* This CPU's delivery count of `vector`, as a memory operand. */
#define COUNT(vector) %gs:PC_COUNTS+4*vector

/*
 * Checks that the deliveries of `vector` since the last zero_counts_all match
 * `mask` (bit n: slot n gets exactly one, others none); fails naming the CPU.
 */
.macro EXPECT_DELIVERY vector:req, mask:req, what:req
    DEFINE_STR .Lwhat\@, "\what"
    mov     \mask, %esi
    mov     $(\vector), %edi
    call    verify_delivery
    test    %eax, %eax
    jz      .Lok\@
    FAIL_CMP .Lwhat\@, %r9, %r8, rel_eq
.Lok\@:
.endm

/*
 * Fails unless this CPU's delivery log equals the `len` bytes at `seq`;
 * names the first differing position (fail_arg) and the bytes there (0 past an end).
 */
.macro EXPECT_LOG seq:req, len:req, what:req
    DEFINE_STR .Lwhat\@, "\what"
    lea     \seq(%rip), %rdi
    mov     $(\len), %esi
    call    log_compare
    test    %eax, %eax
    jz      .Lok\@
    FAIL_CMP .Lwhat\@, %r9, %r8, rel_eq
.Lok\@:
.endm

#endif
