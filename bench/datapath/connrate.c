/*
 * New-connection rate through masquerade (bench/datapath/run.ts, row masq-connrate). Native on
 * purpose: a JavaScript loop would measure itself, not the datapath.
 *
 *   connrate server PORT_BASE NPORTS
 *       listen on PORT_BASE … PORT_BASE+NPORTS-1, accept and close everything; prints "ready"
 *   connrate client HOST PORT_BASE NPORTS MAX_CONNS MAX_SECONDS MAX_FAILURES TIMEOUT_MS
 *       one connection after the other, round robin over the ports: socket(), connect() (a
 *       failure is a connect that does not complete in TIMEOUT_MS), close with SO_LINGER 0 (RST:
 *       no TIME_WAIT on either side); stops at MAX_CONNS connections, MAX_SECONDS or MAX_FAILURES.
 *       Prints JSON {ok, failures, okAtFirstFailure, secondsAtFirstFailure (the first failed
 *       connect's start, -1 without one), seconds, perSecond: [ok count at each whole second]}
 *   connrate count PINNED_MAP
 *       walks a pinned pn_snat4 (16-byte nat4_key, dir at byte 13) and prints
 *       {entries, out, in}
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <linux/bpf.h>
#include <netinet/in.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

static double now(void)
{
	struct timespec t;
	clock_gettime(CLOCK_MONOTONIC, &t);
	return t.tv_sec + t.tv_nsec / 1e9;
}

static int server(int base, int nports)
{
	int ep = epoll_create1(0);
	for (int i = 0; i < nports; i++) {
		int s = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0), one = 1;
		setsockopt(s, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
		struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons(base + i)};
		if (bind(s, (struct sockaddr *)&sa, sizeof(sa)) || listen(s, 4096)) {
			perror("bind/listen");
			return 1;
		}
		struct epoll_event ev = {.events = EPOLLIN, .data.fd = s};
		epoll_ctl(ep, EPOLL_CTL_ADD, s, &ev);
	}
	printf("ready\n");
	fflush(stdout);
	struct epoll_event evs[64];
	for (;;) {
		int n = epoll_wait(ep, evs, 64, -1);
		for (int i = 0; i < n; i++) {
			int c;
			while ((c = accept4(evs[i].data.fd, NULL, NULL, SOCK_NONBLOCK)) >= 0)
				close(c);
		}
	}
}

static int client(const char *host, int base, int nports, long max, double seconds, long maxfail, int timeout_ms)
{
	struct sockaddr_in sa = {.sin_family = AF_INET};
	if (inet_pton(AF_INET, host, &sa.sin_addr) != 1)
		return 2;
	struct linger lg = {.l_onoff = 1, .l_linger = 0};
	struct timeval tv = {.tv_sec = timeout_ms / 1000, .tv_usec = (timeout_ms % 1000) * 1000};
	long ok = 0, fail = 0, first = -1;
	double first_t = -1;
	int cap = (int)seconds + 2;
	long *per = calloc(cap, sizeof(long));
	int marks = 0;
	double t0 = now(), t = t0;
	for (long i = 0; ok < max && fail < maxfail; i++) {
		sa.sin_port = htons(base + i % nports);
		int s = socket(AF_INET, SOCK_STREAM, 0);
		setsockopt(s, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
		setsockopt(s, SOL_SOCKET, SO_LINGER, &lg, sizeof(lg));
		if (connect(s, (struct sockaddr *)&sa, sizeof(sa)) == 0) {
			ok++;
		} else {
			if (first < 0) {
				first = ok;
				first_t = now() - t0;
			}
			fail++;
		}
		close(s);
		t = now();
		while (marks < cap && t - t0 >= marks + 1)
			per[marks++] = ok;
		if (t - t0 >= seconds)
			break;
	}
	printf("{\"ok\":%ld,\"failures\":%ld,\"okAtFirstFailure\":%ld,\"secondsAtFirstFailure\":%.3f,\"seconds\":%.3f,\"perSecond\":[", ok, fail, first,
	       first_t, t - t0);
	for (int i = 0; i < marks; i++)
		printf("%s%ld", i ? "," : "", per[i]);
	printf("]}\n");
	return 0;
}

static long sys_bpf(int cmd, union bpf_attr *attr)
{
	return syscall(__NR_bpf, cmd, attr, sizeof(*attr));
}

static int count(const char *pinned)
{
	union bpf_attr a = {0};
	a.pathname = (uint64_t)(uintptr_t)pinned;
	int fd = sys_bpf(BPF_OBJ_GET, &a);
	if (fd < 0) {
		perror("BPF_OBJ_GET");
		return 1;
	}
	unsigned char key[16], next[16];
	long entries = 0, out = 0, in = 0;
	int have = 0;
	for (;;) {
		memset(&a, 0, sizeof(a));
		a.map_fd = fd;
		a.key = have ? (uint64_t)(uintptr_t)key : 0;
		a.next_key = (uint64_t)(uintptr_t)next;
		if (sys_bpf(BPF_MAP_GET_NEXT_KEY, &a) < 0)
			break;
		entries++;
		if (next[13] == 1)
			out++;
		else if (next[13] == 2)
			in++;
		memcpy(key, next, sizeof(key));
		have = 1;
	}
	printf("{\"entries\":%ld,\"out\":%ld,\"in\":%ld}\n", entries, out, in);
	return 0;
}

int main(int argc, char **argv)
{
	struct rlimit rl = {65536, 65536};
	setrlimit(RLIMIT_NOFILE, &rl);
	if (argc == 4 && !strcmp(argv[1], "server"))
		return server(atoi(argv[2]), atoi(argv[3]));
	if (argc == 9 && !strcmp(argv[1], "client"))
		return client(argv[2], atoi(argv[3]), atoi(argv[4]), atol(argv[5]), atof(argv[6]), atol(argv[7]), atoi(argv[8]));
	if (argc == 3 && !strcmp(argv[1], "count"))
		return count(argv[2]);
	fprintf(stderr, "usage: connrate server PORT_BASE NPORTS | client HOST PORT_BASE NPORTS MAX_CONNS MAX_SECONDS MAX_FAILURES TIMEOUT_MS | count PINNED_MAP\n");
	return 2;
}
