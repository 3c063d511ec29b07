package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"time"

	"connectrpc.com/connect"

	"github.com/legionelladossier/legiond/api/services"
	"github.com/legionelladossier/legiond/api/tlsconf"
	"github.com/legionelladossier/legiond/cluster/replication"
	apiv1 "github.com/legionelladossier/legiond/proto/legiond/api/v1"
	"github.com/legionelladossier/legiond/proto/legiond/api/v1/apiv1connect"
)

// clusterFlags are `legiond run`'s cluster membership flags.
type clusterFlags struct {
	nodeID, addr, advertise, peers string
	bootstrap, join                bool
	caDir, ca, cert, key           string
	faults                         bool
}

func (c *clusterFlags) register(fs *flag.FlagSet) {
	fs.StringVar(&c.nodeID, "node-id", "", "cluster member id (enables cluster mode)")
	fs.StringVar(&c.addr, "cluster-addr", "", "mutual-TLS listen address for Raft and forwarded proposals, e.g. 10.0.0.1:7946")
	fs.StringVar(&c.advertise, "cluster-advertise", "", "address peers dial (default: --cluster-addr)")
	fs.StringVar(&c.peers, "cluster-peers", "", "members as id=host:port,... (bootstrap voters, or seeds to join through)")
	fs.BoolVar(&c.bootstrap, "cluster-bootstrap", false, "create a new cluster with --cluster-peers as voters (first start of one member only)")
	fs.BoolVar(&c.join, "cluster-join", false, "ask --cluster-peers to add this member (a new member of a running cluster)")
	fs.StringVar(&c.caDir, "cluster-ca-dir", "", "development CA folder shared by the members (DEVELOPMENT ONLY)")
	fs.StringVar(&c.ca, "cluster-ca", "", "cluster CA certificate (PEM)")
	fs.StringVar(&c.cert, "cluster-cert", "", "member certificate (PEM, server and client authentication)")
	fs.StringVar(&c.key, "cluster-key", "", "member key (PEM)")
	fs.BoolVar(&c.faults, "cluster-fault-injection", false, "TESTS AND DRILLS ONLY: SIGUSR1 cuts this member off its peers, SIGUSR2 heals it")
}

func parsePeers(s string) ([]replication.Peer, error) {
	var peers []replication.Peer
	for _, p := range strings.Split(s, ",") {
		if p = strings.TrimSpace(p); p == "" {
			continue
		}
		id, addr, ok := strings.Cut(p, "=")
		if !ok || id == "" || addr == "" {
			return nil, fmt.Errorf("peer %q: want id=host:port", p)
		}
		peers = append(peers, replication.Peer{ID: id, Address: addr})
	}
	return peers, nil
}

// config returns nil without --node-id (a single node).
func (c *clusterFlags) config() (*clusterConfig, error) {
	if c.nodeID == "" {
		if c.addr != "" || c.peers != "" || c.bootstrap || c.join {
			return nil, errors.New("cluster flags need --node-id")
		}
		return nil, nil
	}
	if c.addr == "" {
		return nil, errors.New("--node-id needs --cluster-addr")
	}
	peers, err := parsePeers(c.peers)
	if err != nil {
		return nil, err
	}
	if c.bootstrap && c.join {
		return nil, errors.New("--cluster-bootstrap and --cluster-join exclude each other")
	}
	return &clusterConfig{NodeID: c.nodeID, BindAddr: c.addr, AdvertiseAddr: c.advertise, Peers: peers,
		Bootstrap: c.bootstrap, Join: c.join, CADir: c.caDir, CAFile: c.ca, CertFile: c.cert, KeyFile: c.key,
		FaultInjection: c.faults}, nil
}

// clusterStatus returns the API's cluster reporter of this node, nil on a
// single node.
func (n *node) clusterStatus() services.ClusterStatus {
	if n.cluster == nil {
		return nil
	}
	return clusterStatus{n}
}

const clusterUsage = `usage: legiond cluster status [--api URL] [--token T] [--ca FILE]
       legiond cluster leave --node-id ID --peers HOST:PORT,... (--cluster-ca-dir DIR | --cluster-ca F --cluster-cert F --cluster-key F)
       legiond cluster join  --node-id ID --address HOST:PORT --peers HOST:PORT,... (same TLS flags)

status prints the members, the Raft leader and term, each member's
partitions, active twins and replication lag (through the API; needs a
platform admin token). leave removes a member from the Raft group: the
leader moves its partitions to the live members at once. join adds a
member that runs with --node-id ID --cluster-addr HOST:PORT (a member
started with --cluster-join does this itself).`

func runCluster(ctx context.Context, args []string, s stdio) int {
	if len(args) == 0 {
		fmt.Fprintln(s.err, clusterUsage)
		return exitUsage
	}
	switch args[0] {
	case "status":
		return runClusterStatus(ctx, args[1:], s)
	case "join", "leave":
		return runClusterMembership(ctx, args[0], args[1:], s)
	case "-h", "--help", "help":
		fmt.Fprintln(s.err, clusterUsage)
		return exitOK
	}
	fmt.Fprintf(s.err, "legiond cluster: unknown subcommand %q\n%s\n", args[0], clusterUsage)
	return exitUsage
}

func runClusterStatus(ctx context.Context, args []string, s stdio) int {
	fs := flag.NewFlagSet("cluster status", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	api := fs.String("api", "https://127.0.0.1:8443", "API base URL of any member")
	token := fs.String("token", "", "platform admin access token (default $"+envToken+")")
	ca := fs.String("ca", "", "CA certificate (PEM) of the API (default: the dev CA of $"+envDataDir+" or .dev when present)")
	if err := fs.Parse(args); err != nil || fs.NArg() > 0 {
		fmt.Fprintf(s.err, "legiond cluster status: bad arguments\n%s\n", clusterUsage)
		return exitUsage
	}
	if *token == "" {
		*token = os.Getenv(envToken)
	}
	if *ca == "" {
		if f := filepath.Join(defaultDataDir(), "tls", tlsconf.CAFileName); fileExists(f) {
			*ca = f
		}
	}
	tlsCfg, err := tlsconf.ClientConfig(*ca)
	if err != nil {
		fmt.Fprintf(s.err, "legiond cluster status: %v\n", err)
		return exitUsage
	}
	hc := &http.Client{Transport: &http.Transport{TLSClientConfig: tlsCfg, ForceAttemptHTTP2: true}, Timeout: 10 * time.Second}
	defer hc.CloseIdleConnections()
	req := connect.NewRequest(&apiv1.GetClusterStatusRequest{})
	req.Header().Set("Authorization", "Bearer "+*token)
	resp, err := apiv1connect.NewClusterServiceClient(hc, strings.TrimRight(*api, "/")).GetClusterStatus(ctx, req)
	if err != nil {
		fmt.Fprintf(s.err, "legiond cluster status: %v\n", err)
		return exitFailure
	}
	printClusterStatus(s.out, resp.Msg)
	return exitOK
}

func printClusterStatus(w io.Writer, st *apiv1.GetClusterStatusResponse) {
	fmt.Fprintf(w, "raft leader %s, term %d; assignment epoch %d; consensus %v\n",
		st.GetRaftLeader(), st.GetRaftTerm(), st.GetAssignmentEpoch(), st.GetTopologyConsensus())
	fmt.Fprintf(w, "%-12s %-22s %-6s %-10s %-8s %-8s %s\n", "MEMBER", "ADDRESS", "ALIVE", "RAFT", "LAG", "TWINS", "PARTITIONS")
	for _, m := range st.GetMembers() {
		twins := "-"
		if m.GetActiveTwins() > 0 {
			twins = fmt.Sprint(m.GetActiveTwins())
		}
		fmt.Fprintf(w, "%-12s %-22s %-6v %-10s %-8d %-8s %v\n", m.GetId(), m.GetAddress(), m.GetAlive(), m.GetRaftState(),
			m.GetReplicationLag(), twins, m.GetPartitions())
	}
}

func runClusterMembership(ctx context.Context, op string, args []string, s stdio) int {
	fs := flag.NewFlagSet("cluster "+op, flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	var cf clusterFlags
	fs.StringVar(&cf.nodeID, "node-id", "", "member id to add or remove")
	address := fs.String("address", "", "the joining member's --cluster-addr (join only)")
	seeds := fs.String("peers", "", "cluster addresses of running members, comma-separated")
	fs.StringVar(&cf.caDir, "cluster-ca-dir", "", "development CA folder (DEVELOPMENT ONLY)")
	fs.StringVar(&cf.ca, "cluster-ca", "", "cluster CA certificate (PEM)")
	fs.StringVar(&cf.cert, "cluster-cert", "", "a certificate of the cluster CA (PEM)")
	fs.StringVar(&cf.key, "cluster-key", "", "its key (PEM)")
	if err := fs.Parse(args); err != nil || fs.NArg() > 0 || cf.nodeID == "" || *seeds == "" || (op == "join") != (*address != "") {
		fmt.Fprintf(s.err, "legiond cluster %s: bad arguments\n%s\n", op, clusterUsage)
		return exitUsage
	}
	cc := clusterConfig{NodeID: "operator-" + op, CADir: cf.caDir, CAFile: cf.ca, CertFile: cf.cert, KeyFile: cf.key}
	_, client, err := cc.memberTLS()
	if err != nil {
		fmt.Fprintf(s.err, "legiond cluster %s: %v\n", op, err)
		return exitUsage
	}
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	if err := replication.ChangeMembership(ctx, client, strings.Split(*seeds, ","), cf.nodeID, *address); err != nil {
		fmt.Fprintf(s.err, "legiond cluster %s: %v\n", op, err)
		return exitFailure
	}
	fmt.Fprintf(s.out, "member %s: %s done\n", cf.nodeID, op)
	return exitOK
}
