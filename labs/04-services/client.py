# N new connections (TCP) or datagrams from new sockets (UDP) to HOST:PORT; prints how many
# each backend answered, the peers the client's sockets saw, and failures.
#   python3 client.py tcp|udp HOST PORT N
import socket, sys, collections
proto, host, port, n = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
counts = collections.Counter(); peers = set(); failures = 0
for _ in range(n):
    try:
        if proto == 'tcp':
            s = socket.create_connection((host, port), timeout=2)
            peers.add('%s:%d' % s.getpeername()); d = s.makefile().readline(); s.close()
        else:
            s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.settimeout(2)
            s.connect((host, port)); s.send(b'x'); d, a = s.recvfrom(200); d = d.decode(); peers.add('%s:%d' % a); s.close()
        counts[d.split()[0]] += 1
    except OSError:
        failures += 1
print('answered by:', ' '.join(f'{k}={v}' for k, v in sorted(counts.items())) or '-', '| peers seen:', ' '.join(sorted(peers)) or '-', '| failures:', failures)
