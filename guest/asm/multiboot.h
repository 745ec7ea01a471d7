/*
 * multiboot.h: Multiboot (version 1) constants for the 32-bit test kernels
 * (mb_kernel.S with the header of mb_elf32.S or mb_aout.S).
 */
#ifndef GUEST_MULTIBOOT_H
#define GUEST_MULTIBOOT_H

#define MB_HEADER_MAGIC     0x1BADB002
#define MB_BOOT_MAGIC       0x2BADB002  /* EAX at entry */
#define MB_PAGE_ALIGN       0x00000001  /* header flags: page-align modules */
#define MB_MEMORY_INFO      0x00000002  /* header flags: mem_* and mmap wanted */
#define MB_AOUT_KLUDGE      0x00010000  /* header flags: load addresses follow */

/* Multiboot information structure (EBX at entry). */
#define MBI_FLAGS           0
#define MBI_MEM_LOWER       4
#define MBI_MEM_UPPER       8
#define MBI_CMDLINE         16
#define MBI_MODS_COUNT      20
#define MBI_MODS_ADDR       24
#define MBI_MMAP_LENGTH     44
#define MBI_MMAP_ADDR       48
#define MBI_LOADER_NAME     64

/* MBI flags bits the kernels need: mem (0), cmdline (2), mods (3), mmap (6), name (9). */
#define MBI_NEEDED          0x24d

/* One module entry: start, end, string, reserved. */
#define MOD_START           0
#define MOD_END             4
#define MOD_STRING          8
#define MOD_SIZE            16

/* One memory-map entry, addressed at its size field (which does not count itself). */
#define MMAP_SIZE           0
#define MMAP_BASE           4
#define MMAP_LEN_LO         12
#define MMAP_LEN_HI         16
#define MMAP_TYPE           20

#define MB_STACK_SIZE       8192
#define MB_EXIT_BAD_MAGIC   0x7f        /* written when EAX is not MB_BOOT_MAGIC */
#define MB_EXIT_FAILED      0x40        /* plus the number of failed checks */

#endif
