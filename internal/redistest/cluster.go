package redistest

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

// StartCluster runs a three-master Redis Cluster on loopback (no replicas, no
// persistence) and returns its node addresses. It skips like StartServer
// when redis-server or redis-cli is missing, except on CI.
func StartCluster(t testing.TB) []string {
	t.Helper()
	if _, err := exec.LookPath("redis-cli"); err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatal("redis-cli not installed (.ci/run installs redis-server, which brings it)")
		}
		t.Skip("redis-cli not installed")
	}
	var addrs []string
	for i := 0; i < 3; i++ {
		s := StartServer(t, "--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf",
			"--cluster-node-timeout", "2000", "--appendonly", "no")
		addrs = append(addrs, fmt.Sprintf("127.0.0.1:%d", s.port))
	}
	args := append([]string{"--cluster", "create"}, addrs...)
	args = append(args, "--cluster-replicas", "0", "--cluster-yes")
	if out, err := exec.Command("redis-cli", args...).CombinedOutput(); err != nil {
		t.Fatalf("redis-cli --cluster create: %v\n%s", err, out)
	}
	rdb := redis.NewClusterClient(&redis.ClusterOptions{Addrs: addrs})
	defer rdb.Close()
	deadline := time.Now().Add(20 * time.Second)
	for {
		info, err := rdb.ClusterInfo(context.Background()).Result()
		if err == nil && strings.Contains(info, "cluster_state:ok") && strings.Contains(info, "cluster_known_nodes:3") {
			return addrs
		}
		if time.Now().After(deadline) {
			t.Fatalf("cluster not ready: %v %s", err, info)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// StartSentinel runs a redis-server master and one Sentinel monitoring it as
// masterName, and returns the Sentinel's address.
func StartSentinel(t testing.TB, masterName string) string {
	t.Helper()
	master := StartServer(t, "--appendonly", "no")
	sentinel := StartServer(t) // reserves a port and a directory; restarted as a Sentinel below
	sentinel.Stop()
	conf := filepath.Join(sentinel.dir, "sentinel.conf")
	body := fmt.Sprintf("port %d\nbind 127.0.0.1\ndir %s\nsentinel monitor %s 127.0.0.1 %d 1\nsentinel down-after-milliseconds %s 2000\n",
		sentinel.port, sentinel.dir, masterName, master.port, masterName)
	if err := os.WriteFile(conf, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command("redis-server", conf, "--sentinel")
	if err := cmd.Start(); err != nil {
		t.Fatalf("start sentinel: %v", err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	addr := fmt.Sprintf("127.0.0.1:%d", sentinel.port)
	sc := redis.NewSentinelClient(&redis.Options{Addr: addr})
	defer sc.Close()
	deadline := time.Now().Add(20 * time.Second)
	for {
		if got, err := sc.GetMasterAddrByName(context.Background(), masterName).Result(); err == nil && len(got) == 2 {
			return addr
		}
		if time.Now().After(deadline) {
			t.Fatal("sentinel did not come up")
		}
		time.Sleep(100 * time.Millisecond)
	}
}
