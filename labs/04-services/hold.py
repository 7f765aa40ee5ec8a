# One long-lived TCP connection: prints the greeting (which backend) and the peer, then sends a
# line and prints the echo each time FIFO gets a line; "quit" ends it. Output goes to stdout.
#   python3 hold.py HOST PORT FIFO
import socket, sys
s = socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=5)
f = s.makefile('rb')
print('held connection to %s, peer %s:%d' % ((f.readline().decode().strip(),) + s.getpeername()), flush=True)
while True:
    with open(sys.argv[3]) as fifo:
        for line in fifo:
            if line.strip() == 'quit':
                sys.exit(0)
            try:
                s.sendall(line.encode()); print('echo: ' + f.readline().decode().strip(), flush=True)
            except OSError as e:
                print('error: %s' % e, flush=True)
