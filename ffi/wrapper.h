/* The DPDK headers the bindings cover. rte_config.h comes first through pkg-config's -include. */
#include <rte_common.h>
#include <rte_errno.h>
#include <rte_eal.h>
#include <rte_lcore.h>
#include <rte_launch.h>
#include <rte_cycles.h>
#include <rte_mempool.h>
#include <rte_mbuf.h>
#include <rte_ethdev.h>
#include <rte_ring.h>
#include <rte_bus_vdev.h>
#include <rte_lpm.h>
#include <rte_fib.h>
#include <rte_version.h>
#include <rte_pdump.h>
#include <rte_telemetry.h>
#include "shim.h"
