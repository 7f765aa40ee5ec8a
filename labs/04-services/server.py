# A tiny backend: TCP greets with "<name> <client ip>:<port>" then echoes lines; UDP answers
# every datagram the same way. The client can tell which backend answered and what it saw.
import socket, sys, threading
port, name = int(sys.argv[1]), sys.argv[2]
t = socket.socket(); t.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1); t.bind(('0.0.0.0', port)); t.listen(512)
u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); u.bind(('0.0.0.0', port))
def conn(c, a):
    try:
        c.sendall(f"{name} {a[0]}:{a[1]}\n".encode())
        for line in c.makefile('rb'):
            c.sendall(line)
    except OSError:
        pass
    c.close()
def udp():
    while True:
        d, a = u.recvfrom(2048); u.sendto(f"{name} {a[0]}:{a[1]}\n".encode(), a)
threading.Thread(target=udp, daemon=True).start()
while True:
    c, a = t.accept(); threading.Thread(target=conn, args=(c, a), daemon=True).start()
