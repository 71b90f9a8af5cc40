/* Internal interface of the STM32 flash controller models (host builds only). */
#ifndef MCU_STM32_MODEL_H
#define MCU_STM32_MODEL_H
#include <stdint.h>
#include "board.h"

extern uint8_t stm32m_mem[];
extern uint32_t stm32m_size, stm32m_vaddr;
/* per controller (model_stm32f4.c / model_stm32l4.c) */
uint32_t stm32m_state_bytes(uint32_t size);
void stm32m_state_init(uint8_t *mem, uint32_t size);
void stm32m_power_on(void);
/* common (model_common.c) */
void stm32m_persist(uint32_t off, uint32_t n);
int stm32m_unit(void); /* 1: tear this unit, then die */
#endif
