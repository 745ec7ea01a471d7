/*
 * trampoline.S: how an application processor gets from SIPI to ap_main.
 *
 * The .trampoline section is linked and loaded at 0x8000 (SIPI vector 0x08),
 * its data (.trampoline.data) on the next page, so an AP starts at trampoline_start in real mode with CS=0x0800, IP=0.
 * It loads the trampoline GDT, enters protected mode, enables PAE, loads the
 * CR3/EFER/CR0 values the BSP stored in tramp_cr3/tramp_efer/tramp_cr0 (so it
 * reuses the VMM's identity page tables), far-jumps to 64-bit code at
 * ap_long_mode_entry, takes the stack the BSP put in tramp_stack_top and
 * calls ap_main, which each guest that starts APs defines (smp.S: check in
 * and halt). The BSP side is aps.S (prepare_trampoline, start_ap). APs are
 * started one at a time, so the tramp_* variables are reused for each.
 */
#include "common.h"

    .section .trampoline, "ax"

/* Real mode, entered at 0x0800:0000. No stack is used until long mode. */
    .code16
FUNCTION(trampoline_start)
    cli
    xor     %ax, %ax
    mov     %ax, %ds                    /* the trampoline lies below 64 KiB */
    lgdtl   tramp_gdt_ptr
    mov     %cr0, %eax
    or      $CR0_PE, %eax
    mov     %eax, %cr0
    ljmpl   $SEL_CODE32, $ap_protected_mode
END(trampoline_start)

/* 32-bit protected mode, paging off: switch on long mode. */
    .code32
FUNCTION(ap_protected_mode)
    mov     $SEL_DATA, %ax
    mov     %ax, %ds
    mov     %ax, %es
    mov     %ax, %ss
    mov     %cr4, %eax
    or      $CR4_PAE, %eax
    mov     %eax, %cr4
    mov     tramp_cr3, %eax
    mov     %eax, %cr3
    mov     $MSR_EFER, %ecx
    mov     tramp_efer, %eax            /* the BSP's EFER with LME set, LMA clear */
    mov     tramp_efer + 4, %edx
    wrmsr
    mov     tramp_cr0, %eax             /* the BSP's CR0: PG and PE set */
    mov     %eax, %cr0
    ljmpl   $SEL_CODE64, $ap_long_mode_entry
END(ap_protected_mode)

    .section .trampoline.data, "aw"
    .p2align 3
OBJECT(tramp_gdt)
    .quad 0
    .quad 0x00af9b000000ffff            /* 0x08: 64-bit code, as in the VMM's GDT */
    .quad 0x00cf93000000ffff            /* 0x10: flat data, as in the VMM's GDT */
    .quad 0x00cf9b000000ffff            /* 0x18: flat 32-bit code */
END(tramp_gdt)
    .p2align 3
OBJECT(tramp_gdt_ptr)
    .word tramp_gdt_ptr - tramp_gdt - 1
    .long tramp_gdt
END(tramp_gdt_ptr)
    .p2align 3
OBJECT(tramp_cr3)
    .quad 0                             /* set by the BSP: its CR3 */
END(tramp_cr3)
OBJECT(tramp_efer)
    .quad 0                             /* set by the BSP: its EFER | LME, without LMA */
END(tramp_efer)
OBJECT(tramp_cr0)
    .quad 0                             /* set by the BSP: its CR0 */
END(tramp_cr0)
OBJECT(tramp_stack_top)
    .quad 0                             /* set by the BSP before each AP's SIPI */
END(tramp_stack_top)

    .text
    .code64

/* First 64-bit code on an AP: data segments, stack, ap_main. Never returns. */
FUNCTION(ap_long_mode_entry)
    LOAD_DATA_SEGMENTS
    mov     tramp_stack_top(%rip), %rsp
    xor     %ebp, %ebp
    call    ap_main
    call    halt_forever
END(ap_long_mode_entry)
