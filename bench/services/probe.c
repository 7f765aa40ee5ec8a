/*
 * Connection-setup latency probe: N times socket() + connect() to HOST:PORT, timing connect()
 * alone with CLOCK_MONOTONIC, then close with SO_LINGER 0 (RST, no TIME_WAIT to exhaust ports).
 * Prints JSON {"n":…, "failures":…, "p50":µs, "p99":µs, "mean":µs}. Native on purpose: the
 * few microseconds measured would drown in a JavaScript event loop.
 *   probe HOST PORT N [WARMUP]
 */
#include <arpa/inet.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

static int cmp(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;
	return x < y ? -1 : x > y;
}

int main(int argc, char **argv)
{
	if (argc < 4) {
		fprintf(stderr, "usage: probe HOST PORT N [WARMUP]\n");
		return 2;
	}
	struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons(atoi(argv[2]))};
	if (inet_pton(AF_INET, argv[1], &sa.sin_addr) != 1)
		return 2;
	int n = atoi(argv[3]), warmup = argc > 4 ? atoi(argv[4]) : 50, ok = 0, failures = 0;
	double *us = calloc(n, sizeof(double)), sum = 0;
	struct linger lg = {.l_onoff = 1, .l_linger = 0};
	for (int i = 0; i < n + warmup; i++) {
		int s = socket(AF_INET, SOCK_STREAM, 0);
		struct timeval tv = {.tv_sec = 2};
		setsockopt(s, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
		setsockopt(s, SOL_SOCKET, SO_LINGER, &lg, sizeof(lg));
		struct timespec t0, t1;
		clock_gettime(CLOCK_MONOTONIC, &t0);
		int r = connect(s, (struct sockaddr *)&sa, sizeof(sa));
		clock_gettime(CLOCK_MONOTONIC, &t1);
		close(s);
		if (i < warmup)
			continue;
		if (r != 0) {
			failures++;
			continue;
		}
		us[ok] = (t1.tv_sec - t0.tv_sec) * 1e6 + (t1.tv_nsec - t0.tv_nsec) / 1e3;
		sum += us[ok++];
	}
	qsort(us, ok, sizeof(double), cmp);
	printf("{\"n\":%d,\"failures\":%d,\"p50\":%.1f,\"p99\":%.1f,\"mean\":%.1f}\n", ok, failures,
	       ok ? us[ok / 2] : -1, ok ? us[(int)(ok * 0.99)] : -1, ok ? sum / ok : -1);
	return 0;
}
