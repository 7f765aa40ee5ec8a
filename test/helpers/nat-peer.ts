/**
 * The peer the masquerade tests run on both sides of a node (an "outside" server, pod clients):
 * one Python script for IPv4 and IPv6, which differ only in the socket family and wildcard address.
 *
 * server tcp|udp PORT           → tell each client "IP PORT" of its source; TCP: again for every line it sends
 * client tcp IP PORT N [HOLD]   → N concurrent connections; prints what the server saw, as JSON (HOLD: wait, ask again)
 * client udp IP PORT            → one datagram from a fresh socket; prints the answer as JSON
 * client tcpclose IP PORT N fin|rst → N connections one after another, each closed once the server
 *                                  answered (FIN, or RST by SO_LINGER 0); prints what the server saw,
 *                                  null for a connection that did not open within 3 s
 * client tcphold IP PORT FILE    → one connection: prints what the server saw, stays idle until FILE
 *                                  exists, then asks again and prints the answer
 */
export function natPeerScript(family: 4 | 6): string {
  const af = family === 4 ? 'AF_INET' : 'AF_INET6'
  const any = family === 4 ? '0.0.0.0' : '::'
  return String.raw`
import asyncio, json, os, resource, socket, struct, sys, time
resource.setrlimit(resource.RLIMIT_NOFILE, (8192, 8192))
mode, proto = sys.argv[1], sys.argv[2]
if mode == 'server':
    port = int(sys.argv[3])
    if proto == 'udp':
        s = socket.socket(socket.${af}, socket.SOCK_DGRAM); s.bind(('${any}', port))
        print('ready', flush=True)
        while True:
            data, peer = s.recvfrom(2048); s.sendto(('%s %d\n' % peer[:2]).encode(), peer)
    async def handle(r, w):
        peer = w.get_extra_info('peername')
        try:
            w.write(('%s %d\n' % peer[:2]).encode()); await w.drain()
            while await r.readline():
                w.write(('%s %d\n' % peer[:2]).encode()); await w.drain()
        except Exception:
            pass
        w.close()
    async def main():
        srv = await asyncio.start_server(handle, '${any}', port, backlog=4096)
        print('ready', flush=True)
        await srv.serve_forever()
    asyncio.run(main())
ip, port = sys.argv[3], int(sys.argv[4])
if proto == 'udp':
    s = socket.socket(socket.${af}, socket.SOCK_DGRAM); s.settimeout(1.5)
    s.sendto(b'x', (ip, port))
    try:
        a, p = s.recv(2048).decode().split()
        print(json.dumps({'ip': a, 'port': int(p), 'local': s.getsockname()[1]}))
    except socket.timeout:
        print(json.dumps({'timeout': True}))
    sys.exit(0)
if proto == 'tcpclose':
    out = []
    for i in range(int(sys.argv[5])):
        try:
            c = socket.create_connection((ip, port), timeout=3)
            f = c.makefile('r'); a, p = f.readline().split(); f.close()
            if sys.argv[6] == 'rst':
                c.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack('ii', 1, 0))
            c.close()
            out.append([a, int(p)])
        except OSError:
            out.append(None)
    print(json.dumps(out))
    sys.exit(0)
if proto == 'tcphold':
    c = socket.create_connection((ip, port), timeout=10); f = c.makefile('r')
    print(json.dumps(f.readline().split()), flush=True)
    while not os.path.exists(sys.argv[5]):
        time.sleep(0.1)
    c.sendall(b'again\n'); print(json.dumps(f.readline().split()), flush=True)
    sys.exit(0)
n, hold = int(sys.argv[5]), float(sys.argv[6]) if len(sys.argv) > 6 else 0
socks = []
for i in range(n):
    c = socket.create_connection((ip, port), timeout=10); socks.append((c, c.makefile('r')))
seen = [f.readline().split() for c, f in socks]
out = {'seen': [[a, int(p)] for a, p in seen], 'local': [c.getsockname()[1] for c, f in socks]}
if hold:
    time.sleep(hold)
    for c, f in socks: c.sendall(b'again\n')
    out['again'] = [[a, int(p)] for a, p in (f.readline().split() for c, f in socks)]
print(json.dumps(out))
`
}
