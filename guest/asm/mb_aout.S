/*
 * mb_aout.S: the multiboot header of the `mb-aout` test kernel, a flat binary
 * (no ELF headers at all) loaded through the a.out-kludge addresses: the file
 * starts at load_addr with this header, text and data run to load_end_addr,
 * bss to bss_end_addr (symbols from mb32.ld). The kernel is mb_kernel.S.
 */
#include "multiboot.h"

#define MB_FLAGS (MB_PAGE_ALIGN | MB_MEMORY_INFO | MB_AOUT_KLUDGE)

    .section .multiboot, "a"
    .p2align 2
mb_header:
    .long   MB_HEADER_MAGIC
    .long   MB_FLAGS
    .long   -(MB_HEADER_MAGIC + MB_FLAGS)
    .long   mb_header                   /* header_addr */
    .long   mb_load_start               /* load_addr */
    .long   mb_load_end                 /* load_end_addr */
    .long   mb_bss_end                  /* bss_end_addr */
    .long   mb_entry                    /* entry_addr */

    .section .rodata
    .globl  mb_kind
mb_kind:
    .asciz  "a.out kludge"
