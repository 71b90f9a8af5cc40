#ifndef MCU_TEST_HARNESS_H
#define MCU_TEST_HARNESS_H
#include <stdint.h>
void harness_puts(const char *s);
void harness_exit(int32_t code);
uint32_t harness_ticks(void);
#endif
