/*
 * mb_elf32.S: the multiboot header of the `mb-elf32` test kernel, an ELF32
 * image whose segments the loader places from its program headers (no a.out
 * kludge). The kernel itself is mb_kernel.S.
 */
#include "multiboot.h"

#define MB_FLAGS (MB_PAGE_ALIGN | MB_MEMORY_INFO)

    .section .multiboot, "a"
    .p2align 2
    .long   MB_HEADER_MAGIC
    .long   MB_FLAGS
    .long   -(MB_HEADER_MAGIC + MB_FLAGS)

    .section .rodata
    .globl  mb_kind
mb_kind:
    .asciz  "elf32"
