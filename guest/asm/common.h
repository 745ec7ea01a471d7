/*
 * common.h: constants and macros shared by every guest's assembly files.
 *
 * Included (through the C preprocessor) by each .S file; holds no code
 * outside macros.
 * Values mirror the boot contract between hvtrace's VMM and its guests.
 */
#ifndef GUEST_COMMON_H
#define GUEST_COMMON_H

/* Declares a global function symbol, 16-byte aligned, visible to a tracer. */
#define FUNCTION(name) .p2align 4; .globl name; .type name, @function; name:
/* Closes a function opened with FUNCTION, giving its symbol a size. */
#define END(name) .size name, . - name
/* Declares a global data object (close it with END). */
#define OBJECT(name) .globl name; .type name, @object; name:

/* PUTS label: serial_puts(label). */
.macro PUTS label:req
    lea     \label(%rip), %rdi
    call    serial_puts
.endm

/* PUTDEC32 mem: print_dec of the u32 at mem. */
.macro PUTDEC32 mem:req
    mov     \mem, %edi
    call    print_dec
.endm

/* PUSH_SCRATCH: saves the registers the SysV ABI lets a callee clobber (9 pushes, 72 bytes). */
.macro PUSH_SCRATCH
    push    %rax
    push    %rcx
    push    %rdx
    push    %rsi
    push    %rdi
    push    %r8
    push    %r9
    push    %r10
    push    %r11
.endm

/* POP_SCRATCH: restores what PUSH_SCRATCH saved. */
.macro POP_SCRATCH
    pop     %r11
    pop     %r10
    pop     %r9
    pop     %r8
    pop     %rdi
    pop     %rsi
    pop     %rdx
    pop     %rcx
    pop     %rax
.endm

/* READ_TSC: %rax = the TSC (clobbers %rdx). */
.macro READ_TSC
    rdtsc
    shl     $32, %rdx
    or      %rdx, %rax
.endm

/* Boot-info block passed in RDI at entry (physical 0x1000). */
#define BOOT_INFO_MAGIC     0x42545648  /* "HVTB" */
#define BI_MAGIC            0
#define BI_VERSION          4
#define BI_CPU_COUNT        8
#define BI_BSP_APIC_ID      12
#define BI_MEM_SIZE         16
#define BI_CMDLINE_ADDR     24
#define BI_CMDLINE_LEN      32
#define BI_TSC_KHZ          40          /* u32, 0 if unknown */

/* 16550 UART (COM1). */
#define COM1_THR            0x3f8
#define COM1_IER            0x3f9
#define COM1_LCR            0x3fb
#define COM1_MCR            0x3fc
#define COM1_LSR            0x3fd
#define LSR_THRE            0x20
#define SERIAL_POLL_LIMIT   100000

/* Debug-exit port: the byte written becomes hvtrace's exit status. */
#define EXIT_PORT           0xf4

/* Exit statuses used by the guests. */
#define EXIT_OK             0
#define EXIT_CPUS_MISSING   1   /* smp: not every CPU checked in */
#define EXIT_BAD_BOOT_INFO  2   /* smp: boot-info magic is wrong */
#define EXIT_MP_TABLE       3   /* smp: MP table missing, invalid or disagreeing */
#define EXIT_IPI_TIMEOUT    4   /* smp: ICR delivery status never cleared */
#define EXIT_LOCK_TIMEOUT   5   /* serial lock never became free */

/* Local APIC (xAPIC MMIO). */
#define LAPIC_BASE          0xfee00000
#define LAPIC_ID            0x20
#define LAPIC_SVR           0xf0
#define LAPIC_ICR_LO        0x300
#define LAPIC_ICR_HI        0x310
#define SVR_ENABLE_SPURIOUS 0x1ff       /* APIC enabled, spurious vector 0xff */
#define ICR_INIT_ASSERT     0x4500      /* INIT, level assert */
#define ICR_STARTUP         0x4600      /* SIPI; OR in the vector */
#define ICR_BUSY            0x1000      /* delivery status */
#define ICR_POLL_LIMIT      100000

/* 8259 PIC data (mask) ports. */
#define PIC1_DATA           0x21
#define PIC2_DATA           0xa1

/* Real-mode trampoline for the APs: page 0x8000, SIPI vector 0x08 (see guest.ld). */
#define TRAMPOLINE_ADDR     0x8000
#define SIPI_VECTOR         (TRAMPOLINE_ADDR >> 12)

/* Control registers and MSRs. */
#define CR0_PE              0x1
#define CR4_PAE             0x20
#define MSR_EFER            0xc0000080
#define EFER_LME            0x100
#define EFER_LMA            0x400

/* Selectors: the VMM's GDT and the trampoline's GDT agree on 0x08 and 0x10. */
#define SEL_CODE64          0x08
#define SEL_DATA            0x10
#define SEL_CODE32          0x18        /* trampoline GDT only */

/* Stacks and limits. */
#define BOOT_STACK_SIZE     16384
#define AP_STACK_SHIFT      12          /* 4 KiB per AP */
#define MAX_CPUS            256
#define SPIN_LIMIT          2000000     /* bound for every spin-wait loop */
#define IPI_DELAY           10000       /* pause iterations between INIT and SIPIs */
#define CHECKIN_TSC_TIMEOUT 10000000000 /* TSC ticks an AP gets to check in */

/* LOAD_DATA_SEGMENTS: DS, ES, SS, FS and GS = SEL_DATA (clobbers %eax), first thing in 64-bit code. */
.macro LOAD_DATA_SEGMENTS
    mov     $SEL_DATA, %eax
    mov     %eax, %ds
    mov     %eax, %es
    mov     %eax, %ss
    mov     %eax, %fs
    mov     %eax, %gs
.endm

#endif
