/* The DPDK headers espada binds. Every rte_* name the project uses comes through here. */
#include <rte_eal.h>
#include <rte_errno.h>
#include <rte_lcore.h>
#include <rte_launch.h>
#include <rte_cycles.h>
#include <rte_pause.h>
#include <rte_dev.h>
#include <rte_ethdev.h>
#include <rte_mbuf.h>
#include <rte_mempool.h>
#include <rte_ring.h>
#include <rte_ether.h>
#include <rte_thread.h>
#include <rte_eth_ring.h>

/* Macros and thread-local variables that bindgen cannot bind: see shim.c. */
int espada_rte_errno(void);
uint16_t espada_pktmbuf_headroom_default(void);
