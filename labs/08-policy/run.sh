#!/usr/bin/env bash
# Lab 08: identities and Kubernetes NetworkPolicy, enforced in BPF on two nodes. The nodes share a
# cluster store (etcd in its own namespace) and run their agents with --cluster. Three namespaces
# (frontend, backend, db) with labels; four pods, each with labels passed by the runtime
# (args.cni.labels), spread over both nodes. Policies are applied one by one with `pn policy
# apply`; after each, the pods probe each other, `pn monitor` shows the denials with both
# identities and their labels, and `pn policy trace` explains each verdict. A relabel (`pn endpoint
# label`) moves a pod to another identity and changes a verdict. Tears everything down unless
# PN_LAB_KEEP=1.
source "$(dirname "$0")/../lib/common.sh"
source "$(dirname "$0")/../lib/cluster.sh"
source "$(dirname "$0")/env.sh"
HERE=$(cd "$(dirname "$0")" && pwd)
PY=$HERE/../04-services   # the tiny python server of lab 04

need_root
need_cmds ip tc bpftool clang node python3 etcd
ALL_NS=("$SW_NS" "$ETCD_NS")
for i in "${NODES[@]}"; do ALL_NS+=("$(node_ns "$i")"); done
for p in "${PODS[@]}"; do ALL_NS+=("$(pod_ns "$p")"); done
for ns in "${ALL_NS[@]}"; do
  [ ! -e "/run/netns/$ns" ] || die "$ns already exists (a previous run kept? run $HERE/teardown.sh)"
done
ensure_built
ensure_bpffs
on_exit "bash $HERE/teardown.sh"
mkdir -p "$WORK"

json() { node -e 'let s="";process.stdin.on("data",d=>s+=d).on("end",()=>{const v=JSON.parse(s);console.log(eval("v"+process.argv[1]))})' "$1"; }
N1=$(node_ns 1)
pnc() { pn_cluster "$N1" "$@" --cluster "$CLUSTER"; }
converge() { wait_converged 20 "$N1" "$CLUSTER" 2; }

# What a runtime does, through the native client: cni POD COMMAND
cni() {
  local pod=$1 cmd=$2 i=${POD_NODE[$1]} ns=${1%%/*} name=${1##*/} labels=${POD_LABELS[$1]}
  local conf="{\"cniVersion\":\"1.0.0\",\"name\":\"pn-lab\",\"type\":\"pn\",\"stateDir\":\"$(node_state "$i")\",\"args\":{\"cni\":{\"labels\":[{\"key\":\"${labels%%=*}\",\"value\":\"${labels##*=}\"}]}}}"
  ip netns exec "$(node_ns "$i")" env -i PATH="$PATH" CNI_COMMAND="$cmd" CNI_CONTAINERID="$LAB_ID-${POD_SHORT[$pod]}" CNI_NETNS="/run/netns/$(pod_ns "$pod")" \
    CNI_IFNAME=eth0 CNI_PATH=/opt/cni/bin CNI_ARGS="K8S_POD_NAMESPACE=$ns;K8S_POD_NAME=$name" \
    "$PN_REPO/dist/native/pn-cni" <<<"$conf"
}
pod_ip() { ip -n "$(pod_ns "$1")" -j addr show dev eth0 | json '[0].addr_info.find(a=>a.family==="inet").local'; }
declare -A IP
# reach FROM TO: a TCP connection from pod FROM to pod TO's port (1 s), "ok" or "dropped"
reach() {
  if ip netns exec "$(pod_ns "$1")" timeout 1 bash -c "exec 3<>/dev/tcp/${IP[$2]}/${POD_PORT[$2]}" 2>/dev/null; then echo ok; else echo dropped; fi
}
# expect FROM TO ok|dropped
expect() {
  local got; got=$(reach "$1" "$2")
  printf '  %-14s -> %-14s %-5s %s\n' "$1" "$2" "${POD_PORT[$2]}/tcp" "$got"
  [ "$got" = "$3" ] || die "$1 -> $2: expected $3, got $got"
}
# trace FROM TO: pn policy trace, and check its verdict against the datapath's
trace() {
  local out verdict want
  out=$(pnc policy trace --from "$1" --to "$2" --port "${POD_PORT[$2]}/tcp")
  printf '$ pn policy trace --from %s --to %s --port %s/tcp\n%s\n' "$1" "$2" "${POD_PORT[$2]}" "$out"
  verdict=$(pnc policy trace --from "$1" --to "$2" --port "${POD_PORT[$2]}/tcp" --json | json '.result.verdict')
  want=$([ "$(reach "$1" "$2")" = ok ] && echo allowed || echo denied)
  [ "$verdict" = "$want" ] || die "trace says $verdict for $1 -> $2, the datapath $want"
}
# denial FROM TO: pn monitor on TO's node shows the drop (POLICY_DENIED, both identities and their labels)
denial() {
  local i=${POD_NODE[$2]} out
  out=$(monitor_around "$(node_ns "$i")" "$(node_state "$i")" 3 "--type drop --ip ${IP[$1]} --cluster $CLUSTER" reach "$1" "$2")
  echo "$out"
  grep -qi "policy denied" <<<"$out" || die "pn monitor on node $i showed no policy denial for $1 -> $2"
  grep -q "k8s:${POD_LABELS[$1]}" <<<"$out" || die "pn monitor did not name $1's identity by its labels"
}

step "the world: switch $SW_NS, etcd in $ETCD_NS, nodes $(node_ns 1) and $(node_ns 2) (routing bpf)"
for ns in "$SW_NS" "$ETCD_NS" "$(node_ns 1)" "$(node_ns 2)"; do ns_add "$ns"; done
switch_nodes "$SW_NS" "$(node_ns 1):$(node_ip 1)" "$(node_ns 2):$(node_ip 2)" "$ETCD_NS:$ETCD_IP"
for i in "${NODES[@]}"; do
  pn_in "$(node_ns "$i")" "$(node_state "$i")" node init --name "$(node_name "$i")" --device eth0 --pod-cidr "$(node_cidr "$i")" --routing bpf >/dev/null
  echo "node $i: $(node_name "$i"), uplink $(node_ip "$i"), pod CIDR $(node_cidr "$i")"
done
start_etcd "$ETCD_NS" "$ETCD_IP" "$WORK/etcd"
show pnc cluster init
for i in "${NODES[@]}"; do
  pn_in "$(node_ns "$i")" "$(node_state "$i")" agent start --cluster "$CLUSTER" --auto-direct-routes --json >/dev/null || die "pn agent start on node $i failed"
done
converge

step "namespaces and their labels (part of every pod's identity; what namespaceSelector matches)"
show pnc namespace label frontend team=web
show pnc namespace label backend team=api
show pnc namespace label db team=data

step "pods, with labels from the runtime (args.cni.labels) and their namespace from K8S_POD_NAMESPACE"
for p in "${PODS[@]}"; do
  ns_add "$(pod_ns "$p")"
  cni "$p" ADD >/dev/null || die "CNI ADD of $p failed"
  IP[$p]=$(pod_ip "$p")
  ip netns exec "$(pod_ns "$p")" python3 "$PY/server.py" "${POD_PORT[$p]}" "${p##*/}" >/dev/null 2>&1 & echo $! >"$WORK/${POD_SHORT[$p]}.pid"
  echo "$p on node ${POD_NODE[$p]}: ${IP[$p]} (${POD_LABELS[$p]}), serving ${POD_PORT[$p]}/tcp"
done
listening() { ip netns exec "$(pod_ns "$1")" bash -c "exec 3<>/dev/tcp/127.0.0.1/${POD_PORT[$1]}" 2>/dev/null; }
for p in "${PODS[@]}"; do
  for _ in $(seq 50); do listening "$p" && break; sleep 0.1; done
  listening "$p" || die "$p is not listening on ${POD_PORT[$p]}"
done
converge
echo "every pod has a security identity: one number per label set, the same on both nodes"
show pnc identity list
show pn_in "$(node_ns 2)" "$(node_state 2)" bpf map dump pn_ipcache

step "no policy: every pod reaches every other (a pod selected by no policy is open)"
expect frontend/web backend/api ok
expect frontend/test backend/api ok
expect frontend/web db/pg ok
expect backend/api db/pg ok

step "policy 1: default deny on ingress to the db namespace"
cat >"$WORK/db-deny.yaml" <<'YAML'
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: default-deny, namespace: db}
spec:
  podSelector: {}
  policyTypes: [Ingress]
YAML
cat "$WORK/db-deny.yaml"
show pnc policy apply "$WORK/db-deny.yaml"
converge
expect frontend/web db/pg dropped
expect backend/api db/pg dropped
expect frontend/web backend/api ok
denial frontend/web db/pg
trace frontend/web db/pg

step "policy 2: the backend namespace may reach pg on 5432 (namespaceSelector + ports)"
cat >"$WORK/db-from-backend.yaml" <<'YAML'
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: from-backend, namespace: db}
spec:
  podSelector: {matchLabels: {app: pg}}
  ingress:
  - from:
    - namespaceSelector: {matchLabels: {team: api}}
    ports:
    - {protocol: TCP, port: 5432}
YAML
cat "$WORK/db-from-backend.yaml"
show pnc policy apply -f "$WORK/db-from-backend.yaml" --dry-run
show pnc policy apply -f "$WORK/db-from-backend.yaml"
converge
expect backend/api db/pg ok
expect frontend/web db/pg dropped
trace backend/api db/pg
trace frontend/web db/pg

step "policy 3: the api takes connections only from frontend pods labelled app=web"
cat >"$WORK/api-from-web.yaml" <<'YAML'
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: from-web, namespace: backend}
spec:
  podSelector: {matchLabels: {app: api}}
  ingress:
  - from:
    - namespaceSelector: {matchLabels: {team: web}}
      podSelector: {matchLabels: {app: web}}
    ports:
    - {port: 8080}
YAML
cat "$WORK/api-from-web.yaml"
show pnc policy apply "$WORK/api-from-web.yaml"
converge
expect frontend/web backend/api ok
expect frontend/test backend/api dropped
denial frontend/test backend/api
trace frontend/test backend/api
show pnc policy list
echo "pn status on node 2 shows each endpoint's enforcement:"
pn_in "$(node_ns 2)" "$(node_state 2)" status | grep -A3 "policy" || true
st=$(pn_in "$(node_ns 2)" "$(node_state 2)" status --json | json '.result.sections.find(s=>s.name==="policy").items.find(i=>i.name==="backend/api").details.ingress')
[ "$st" = enforced ] || die "pn status says backend/api ingress is $st, not enforced"

step "a relabel: frontend/test becomes app=web, moves to web's identity, and may reach the api"
show pnc endpoint label frontend/test app=web
converge
expect frontend/test backend/api ok
trace frontend/test backend/api
show pn_in "$(node_ns 2)" "$(node_state 2)" status

step "deleting the policies opens the pods again"
show pnc policy delete backend/from-web
show pnc policy delete db/from-backend
show pnc policy delete db/default-deny
converge
expect frontend/web db/pg ok
expect frontend/test backend/api ok

step "done: every denial was a Policy denied drop in pn monitor, and pn policy trace agreed with the datapath each time"
