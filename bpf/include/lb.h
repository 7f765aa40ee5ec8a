/* SPDX-License-Identifier: GPL-2.0 */
/*
 * HOOK: service load balancing (a later issue). from-container calls lb4_xlate() on every
 * IPv4 packet after anti-spoofing and before the endpoint lookup, exactly where Cilium's
 * per-packet LB (__per_packet_lb_svc_xlate_4) sits: a service VIP rewritten to a backend here
 * then takes the normal local-delivery / to-stack path. Return 0 to continue, a negative
 * DROP_* (e.g. DROP_NO_SERVICE) to drop. Until services land it is a no-op the compiler removes.
 */
#ifndef PN_LB_H
#define PN_LB_H

#include "common.h"
#include "drop_reasons.h"

static __always_inline int lb4_xlate(struct __sk_buff *skb __attribute__((unused)))
{
	return 0;
}

#endif
