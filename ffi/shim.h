/* Accessors for what bindgen cannot reach: per-lcore thread-local variables and macros. */
#ifndef BACKBONE_DPDK_SHIM_H
#define BACKBONE_DPDK_SHIM_H
#include <stdint.h>
#include <rte_mbuf.h>

/* The calling thread's rte_errno. */
int backbone_rte_errno(void);
/* Pointer to the first data byte of an mbuf segment (rte_pktmbuf_mtod). */
void *backbone_pktmbuf_mtod(struct rte_mbuf *m);
/* Headroom DPDK reserves in every mbuf (RTE_PKTMBUF_HEADROOM). */
uint16_t backbone_pktmbuf_headroom_default(void);
/* Default mbuf data room (RTE_MBUF_DEFAULT_BUF_SIZE). */
uint16_t backbone_mbuf_default_buf_size(void);
/* The IP hash types RSS may use (RTE_ETH_RSS_IP, a macro bindgen cannot evaluate). */
uint64_t backbone_eth_rss_ip(void);
#endif
