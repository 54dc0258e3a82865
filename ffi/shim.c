#include "shim.h"
#include <rte_errno.h>
#include <rte_ethdev.h>

int backbone_rte_errno(void) { return rte_errno; }
void *backbone_pktmbuf_mtod(struct rte_mbuf *m) { return rte_pktmbuf_mtod(m, void *); }
uint16_t backbone_pktmbuf_headroom_default(void) { return RTE_PKTMBUF_HEADROOM; }
uint16_t backbone_mbuf_default_buf_size(void) { return RTE_MBUF_DEFAULT_BUF_SIZE; }
uint64_t backbone_eth_rss_ip(void) { return RTE_ETH_RSS_IP; }
