/* The few libc functions the firmware uses. Bare-metal boards define them in
 * boards/cortexm/libc_min.c (no newlib); the host board uses its libc. */
#ifndef MCU_UTIL_H
#define MCU_UTIL_H
#include <stddef.h>
void *memcpy(void *dst, const void *src, size_t n);
void *memmove(void *dst, const void *src, size_t n);
void *memset(void *dst, int c, size_t n);
int memcmp(const void *a, const void *b, size_t n);
size_t strlen(const char *s);
#endif
