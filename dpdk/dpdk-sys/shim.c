/* Hand-written helpers for what bindgen cannot express: rte_errno is a macro over a
 * thread-local variable (binding the per_lcore_ variable directly links and then segfaults). */
#include "wrapper.h"

int espada_rte_errno(void) { return rte_errno; }

uint16_t espada_pktmbuf_headroom_default(void) { return RTE_PKTMBUF_HEADROOM; }
