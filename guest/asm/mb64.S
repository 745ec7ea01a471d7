/*
 * mb64.S: the Multiboot (version 1) door into the 64-bit guests, linked into
 * every one of them, so `qemu-system-x86_64 -kernel guest.elf` (or GRUB)
 * runs the same image that hvtrace boots.
 *
 * hvtrace itself never comes this way: it enters the ELF entry (_start) in
 * long mode with its boot-info block (vmm/src/boot.rs), because an ELF64
 * whose ELF entry differs from its multiboot entry boots natively there
 * (vmm/src/loader/mod.rs). QEMU refuses ELF64 multiboot kernels unless the
 * header carries the a.out-kludge addresses (flags bit 16), so it does: the
 * image from 1 MiB to mb_load_end is one contiguous run of the file
 * (guest.ld), bss follows to mb_bss_end.
 *
 * mb_entry32 (32-bit protected mode, paging off, EAX = 0x2BADB002, EBX = the
 * multiboot information) builds what hvtrace would have provided: page
 * tables identity-mapping 4 GiB with 2 MiB pages (QEMU's default CPU may
 * lack 1 GiB pages; the MMIO hole from 3 GiB uncached) and mapped again at
 * 0xffff800000000000, a GDT with the same 64-bit code (0x08) and data
 * (0x10) selectors, then PAE, EFER.LME, paging and a far jump to
 * mb_entry64. That fills a boot-info block (common.h) from the multiboot
 * information and the machine, and jumps to _start:
 * - cpu_count: the enabled processors of the ACPI MADT, listed again in an
 *   MP table the guests then find (mb_cpus.S: SeaBIOS's own MP table lists
 *   one processor per package); without a MADT, those of the firmware's MP
 *   table (mptable.S); 1 when there is neither;
 * - bsp_apic_id: CPUID leaf 1;
 * - mem_size: 1 MiB + mem_upper KiB (RAM up to the first hole; 0 when the
 *   loader gives no memory information);
 * - the command line, without its first word (QEMU and GRUB put the
 *   kernel's path there; a boot loader named "hvtrace" does not), at most
 *   MB_CMDLINE_MAX bytes;
 * - tsc_khz: measured against the PIT (channel 2, about 10 ms), 0 if the PIT
 *   does not answer.
 * It also masks the 8259 PICs the firmware left programmed (the guests take
 * ISA interrupts through the IOAPIC). Plain integer instructions only, no
 * 32-bit iret: the host's instruction emulator runs this code (HOST.md).
 */
#include "common.h"
#include "multiboot.h"

#define MB64_FLAGS          (MB_MEMORY_INFO | MB_AOUT_KLUDGE)
#define MBI_FLAG_MEM        0x001
#define MBI_FLAG_CMDLINE    0x004
#define MBI_FLAG_NAME       0x200
#define PTE_P_W             0x003       /* present, writable */
#define PDE_LARGE           0x083       /* present, writable, 2 MiB page */
#define PDE_UNCACHED        0x018       /* PCD | PWT */
#define MMIO_HOLE           0xc0000000
#define CR0_PG_PE           0x80000001
#define MB_CMDLINE_MAX      3840        /* hvtrace's own limit (vmm/src/layout.rs) */
#define MB_STACK_SIZE64     8192
#define PIT_HZ              1193182
#define PIT_CAL_TICKS       11932       /* about 10 ms */
#define PIT_CAL_LIMIT       10000000    /* polls of port 0x61 before giving up */
#define LOADER_HVTRACE      0x0065636172747668 /* "hvtrace\0" */

    .section .multiboot, "a"
    .p2align 2
mb64_header:
    .long   MB_HEADER_MAGIC
    .long   MB64_FLAGS
    .long   -(MB_HEADER_MAGIC + MB64_FLAGS)
    .long   mb64_header                 /* header_addr */
    .long   mb_load_start               /* load_addr (guest.ld) */
    .long   mb_load_end                 /* load_end_addr */
    .long   mb_bss_end                  /* bss_end_addr */
    .long   mb_entry32                  /* entry_addr */

    .section .text.mb64, "ax"

/* 32-bit protected mode, paging off, interrupts off; no stack is used. */
    .code32
    .globl  mb_entry32
mb_entry32:
    cli
    mov     %eax, mb_magic
    mov     %ebx, mb_info
    lgdtl   mb_gdt_ptr
    mov     $SEL_DATA, %ax
    mov     %ax, %ds
    mov     %ax, %es
    mov     %ax, %ss
    /* PML4[0] and PML4[256] -> PDPT -> four PDs (the loader zeroed bss) */
    mov     $(mb_pdpt + PTE_P_W), %eax
    mov     %eax, mb_pml4
    mov     %eax, mb_pml4 + 256 * 8
    mov     $(mb_pd + PTE_P_W), %eax
    xor     %ecx, %ecx
1:  mov     %eax, mb_pdpt(,%ecx,8)
    add     $0x1000, %eax
    inc     %ecx
    cmp     $4, %ecx
    jb      1b
    mov     $PDE_LARGE, %eax
    xor     %ecx, %ecx
2:  mov     %eax, %edx
    cmp     $MMIO_HOLE, %eax
    jb      3f
    or      $PDE_UNCACHED, %edx
3:  mov     %edx, mb_pd(,%ecx,8)
    add     $0x200000, %eax
    inc     %ecx
    cmp     $2048, %ecx
    jb      2b
    mov     %cr4, %eax
    or      $CR4_PAE, %eax
    mov     %eax, %cr4
    mov     $mb_pml4, %eax
    mov     %eax, %cr3
    mov     $MSR_EFER, %ecx
    rdmsr
    or      $EFER_LME, %eax
    wrmsr
    mov     %cr0, %eax
    or      $CR0_PG_PE, %eax
    mov     %eax, %cr0
    ljmpl   $SEL_CODE64, $mb_entry64

    .code64
/* First 64-bit code after the multiboot stub: boot-info block, then _start. Never returns. */
FUNCTION(mb_entry64)
    LOAD_DATA_SEGMENTS
    lea     mb_stack_top(%rip), %rsp
    xor     %ebp, %ebp
    mov     $0xff, %al                  /* mask both 8259s */
    out     %al, $PIC1_DATA
    out     %al, $PIC2_DATA
    call    mb_fill_boot_info
    lea     mb_boot_info(%rip), %rdi
    jmp     _start
END(mb_entry64)

/* mb_fill_boot_info(): fills mb_boot_info from the multiboot information and the machine. */
FUNCTION(mb_fill_boot_info)
    push    %rbp
    mov     %rsp, %rbp
    push    %rbx
    push    %r12
    lea     mb_boot_info(%rip), %rbx
    movl    $BOOT_INFO_MAGIC, BI_MAGIC(%rbx)
    movl    $1, BI_VERSION(%rbx)
    lea     mb_cmdline(%rip), %rax
    mov     %rax, BI_CMDLINE_ADDR(%rbx)
    mov     $1, %eax
    cpuid
    shr     $24, %ebx
    lea     mb_boot_info(%rip), %rax
    mov     %ebx, BI_BSP_APIC_ID(%rax)
    lea     mb_boot_info(%rip), %rbx
    xor     %r12d, %r12d                /* the MBI, or 0 */
    cmpl    $MB_BOOT_MAGIC, mb_magic(%rip)
    jne     1f
    mov     mb_info(%rip), %r12d
1:  test    %r12, %r12
    jz      3f
    testl   $MBI_FLAG_MEM, MBI_FLAGS(%r12)
    jz      2f
    mov     MBI_MEM_UPPER(%r12), %eax
    add     $1024, %rax
    shl     $10, %rax
    mov     %rax, BI_MEM_SIZE(%rbx)
2:  mov     %r12, %rdi
    call    mb_copy_cmdline
    mov     %rax, BI_CMDLINE_LEN(%rbx)
3:  mov     BI_BSP_APIC_ID(%rbx), %edi
    call    mb_cpus_from_acpi
    mov     %eax, %ecx
    test    %eax, %eax
    jnz     4f
    call    mp_find
    mov     $1, %ecx
    test    %rax, %rax
    jz      4f
    mov     %rax, %rdi
    call    mp_parse
    mov     $1, %ecx
    test    %eax, %eax
    jle     4f
    mov     %eax, %ecx
4:  mov     %ecx, BI_CPU_COUNT(%rbx)
    call    mb_tsc_khz
    mov     %eax, BI_TSC_KHZ(%rbx)
    pop     %r12
    pop     %rbx
    pop     %rbp
    ret
END(mb_fill_boot_info)

/*
 * mb_copy_cmdline(mbi = %rdi) -> %rax: copies the command line, less the
 * kernel path a boot loader other than hvtrace puts first, into mb_cmdline
 * (not NUL-terminated, at most MB_CMDLINE_MAX bytes) and returns its length.
 */
FUNCTION(mb_copy_cmdline)
    push    %rbp
    mov     %rsp, %rbp
    xor     %eax, %eax
    testl   $MBI_FLAG_CMDLINE, MBI_FLAGS(%rdi)
    jz      9f
    mov     MBI_CMDLINE(%rdi), %esi     /* source */
    test    %esi, %esi
    jz      9f
    testl   $MBI_FLAG_NAME, MBI_FLAGS(%rdi)
    jz      2f
    mov     MBI_LOADER_NAME(%rdi), %ecx
    test    %ecx, %ecx
    jz      2f
    movabs  $LOADER_HVTRACE, %rdx
    cmp     (%rcx), %rdx
    je      3f                          /* hvtrace gives the arguments alone */
2:  movzbl  (%rsi), %ecx                /* skip the first word */
    test    %ecx, %ecx
    jz      9f
    cmp     $0x20, %ecx
    je      3f
    inc     %rsi
    jmp     2b
3:  cmpb    $0x20, (%rsi)               /* and the blanks after it */
    jne     4f
    inc     %rsi
    jmp     3b
4:  lea     mb_cmdline(%rip), %rdi
5:  movzbl  (%rsi), %ecx
    test    %ecx, %ecx
    jz      9f
    cmp     $MB_CMDLINE_MAX, %rax
    jae     9f
    mov     %cl, (%rdi,%rax)
    inc     %rax
    inc     %rsi
    jmp     5b
9:  pop     %rbp
    ret
END(mb_copy_cmdline)

/*
 * mb_tsc_khz() -> %eax: the TSC frequency in kHz, timed against PIT channel
 * 2 counting PIT_CAL_TICKS in mode 0 (as Linux's pit_calibrate_tsc); 0 when
 * OUT2 never rises.
 */
FUNCTION(mb_tsc_khz)
    push    %rbp
    mov     %rsp, %rbp
    push    %rbx
    in      $0x61, %al
    and     $0xfd, %al                  /* speaker off */
    or      $0x01, %al                  /* gate channel 2 on */
    out     %al, $0x61
    mov     $0xb0, %al                  /* channel 2, lo/hi byte, mode 0, binary */
    out     %al, $0x43
    mov     $(PIT_CAL_TICKS & 0xff), %al
    out     %al, $0x42
    mov     $(PIT_CAL_TICKS >> 8), %al
    out     %al, $0x42
    READ_TSC
    mov     %rax, %rbx
    mov     $PIT_CAL_LIMIT, %ecx
1:  in      $0x61, %al
    test    $0x20, %al                  /* OUT2: the count ran out */
    jnz     2f
    dec     %ecx
    jnz     1b
    xor     %eax, %eax
    jmp     9f
2:  READ_TSC
    sub     %rbx, %rax                  /* TSC ticks in PIT_CAL_TICKS */
    mov     $PIT_HZ, %ecx
    mul     %rcx
    mov     $(PIT_CAL_TICKS * 1000), %ecx
    div     %rcx
9:  pop     %rbx
    pop     %rbp
    ret
END(mb_tsc_khz)

    .data
    .p2align 3
mb_gdt:
    .quad   0
    .quad   0x00af9b000000ffff          /* 0x08: 64-bit code, as in hvtrace's GDT */
    .quad   0x00cf93000000ffff          /* 0x10: flat data */
mb_gdt_ptr:
    .word   mb_gdt_ptr - mb_gdt - 1
    .long   mb_gdt
    .p2align 2
mb_magic:
    .long   0                           /* EAX at mb_entry32 */
mb_info:
    .long   0                           /* EBX at mb_entry32 */

    .bss
    .p2align 12
mb_pml4:
    .space  4096
mb_pdpt:
    .space  4096
mb_pd:
    .space  4 * 4096
mb_stack:
    .space  MB_STACK_SIZE64
mb_stack_top:
    .p2align 3
OBJECT(mb_boot_info)
    .space  48
END(mb_boot_info)
mb_cmdline:
    .space  MB_CMDLINE_MAX
