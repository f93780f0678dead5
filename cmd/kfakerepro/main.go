// Command kfakerepro is the minimal reproduction of a kfake bug that
// docs/KFAKE.md describes: a classic-group member whose JoinGroup is parked
// at the broker when its process dies is included in the next generation,
// but its session timer is never armed (kfake's group.reply arms it only
// when the JoinGroup response is delivered). If the live member becomes
// leader and syncs, the group goes Stable and the dead member keeps its
// partitions forever; Kafka would expire it after its session timeout.
//
// Each trial: member A owns all partitions and is SIGKILLed; B starts, its
// JoinGroup waits for A to expire, and B is SIGKILLed while it waits; C
// starts and should end up alone with every partition.
//
//	go run ./cmd/kfakerepro [-trials 4] [-watch 60s] [-workaround]
//
// With -workaround the broker is started through internal/devstack, whose
// reaper removes members silent past their session timeout, as Kafka would.
// It is not part of the test suite: a trial takes a minute and the bug hits
// about one trial in four.
package main

import (
	"bufio"
	"context"
	"flag"
	"fmt"
	"log"
	"os"
	"os/exec"
	"sort"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/IBM/sarama"

	"github.com/sagabridge/sagabridge/internal/devstack"
)

const topic = "t"

func saramaConfig() *sarama.Config {
	c := sarama.NewConfig()
	c.Version = sarama.V3_6_0_0
	c.ClientID = "repro"
	c.Consumer.Return.Errors = true
	c.Consumer.Offsets.AutoCommit.Enable = true
	c.Consumer.Offsets.AutoCommit.Interval = time.Second
	c.Consumer.Offsets.Initial = sarama.OffsetOldest
	c.Consumer.Group.Rebalance.GroupStrategies = []sarama.BalanceStrategy{sarama.NewBalanceStrategyCooperativeSticky()}
	c.Consumer.Group.Rebalance.Timeout = 20 * time.Second
	return c
}

// ---------------- child: one "bridge process" ----------------

type handler struct{}

func (handler) Setup(s sarama.ConsumerGroupSession) error {
	fmt.Printf("SETUP member=%s gen=%d claims=%v\n", s.MemberID(), s.GenerationID(), s.Claims())
	return nil
}
func (handler) Cleanup(sarama.ConsumerGroupSession) error { return nil }
func (handler) ConsumeClaim(s sarama.ConsumerGroupSession, c sarama.ConsumerGroupClaim) error {
	for {
		select {
		case m, ok := <-c.Messages():
			if !ok {
				return nil
			}
			s.MarkMessage(m, "")
		case <-s.Context().Done():
			return nil
		}
	}
}

func child(addr, group string) {
	cg, err := sarama.NewConsumerGroup([]string{addr}, group, saramaConfig())
	if err != nil {
		log.Fatal(err)
	}
	go func() {
		for err := range cg.Errors() {
			fmt.Println("ERR", err)
		}
	}()
	fmt.Println("STARTED")
	for {
		if err := cg.Consume(context.Background(), []string{topic}, handler{}); err != nil {
			fmt.Println("CONSUME ERR", err)
			time.Sleep(time.Second)
		}
	}
}

// ---------------- parent ----------------

type proc struct {
	cmd   *exec.Cmd
	setup chan struct{}
}

func start(self, addr, group, name string, logf func(string, ...any)) *proc {
	cmd := exec.Command(self, "-child", "-addr", addr, "-group", group)
	out, _ := cmd.StdoutPipe()
	cmd.Stderr = cmd.Stdout
	if err := cmd.Start(); err != nil {
		log.Fatal(err)
	}
	p := &proc{cmd: cmd, setup: make(chan struct{})}
	go func() {
		sc := bufio.NewScanner(out)
		once := sync.Once{}
		for sc.Scan() {
			line := sc.Text()
			if strings.HasPrefix(line, "SETUP") {
				once.Do(func() { close(p.setup) })
			}
			logf("  [%s pid=%d] %s", name, cmd.Process.Pid, line)
		}
	}()
	go cmd.Wait()
	return p
}

func (p *proc) kill() { _ = p.cmd.Process.Signal(syscall.SIGKILL) }

func describe(admin sarama.ClusterAdmin, group string) string {
	ds, err := admin.DescribeConsumerGroups([]string{group})
	if err != nil || len(ds) == 0 {
		return fmt.Sprintf("describe err %v", err)
	}
	d := ds[0]
	var parts []string
	for id, m := range d.Members {
		a, _ := m.GetMemberAssignment()
		var ps []int32
		if a != nil {
			ps = a.Topics[topic]
		}
		sort.Slice(ps, func(i, j int) bool { return ps[i] < ps[j] })
		parts = append(parts, fmt.Sprintf("%s=%v", shortID(id), ps))
	}
	sort.Strings(parts)
	return fmt.Sprintf("state=%s members=%d %s", d.State, len(d.Members), strings.Join(parts, " "))
}

func shortID(id string) string {
	if i := strings.LastIndexByte(id, '-'); i >= 0 && len(id)-i > 9 {
		return id[:min(len(id), i+9)]
	}
	return id
}

func trial(self, addr string, n int, watch time.Duration, res chan<- string) {
	group := fmt.Sprintf("g%d", n)
	t0 := time.Now()
	logf := func(f string, a ...any) {
		fmt.Printf("[trial %d +%5.1fs] %s\n", n, time.Since(t0).Seconds(), fmt.Sprintf(f, a...))
	}
	admin, err := sarama.NewClusterAdmin([]string{addr}, saramaConfig())
	if err != nil {
		log.Fatal(err)
	}
	defer admin.Close()

	a := start(self, addr, group, "A", logf)
	<-a.setup
	time.Sleep(2 * time.Second) // some commits + heartbeats
	logf("SIGKILL A; %s", describe(admin, group))
	a.kill()
	time.Sleep(1 * time.Second)

	b := start(self, addr, group, "B", logf)
	time.Sleep(3 * time.Second) // B's second JoinGroup is now parked: A is still a member until its session expires
	logf("before SIGKILL B: %s", describe(admin, group))
	b.kill()
	logf("SIGKILL B (its JoinGroup is parked)")
	time.Sleep(1 * time.Second)

	c := start(self, addr, group, "C", logf)
	defer c.kill()
	var last string
	deadline := time.Now().Add(watch)
	for time.Now().Before(deadline) {
		time.Sleep(3 * time.Second)
		last = describe(admin, group)
		logf("C alive only; %s", last)
	}
	verdict := "RECOVERED"
	if strings.Contains(last, "members=2") {
		verdict = "STUCK (dead member B still in Stable group)"
	}
	res <- fmt.Sprintf("trial %d: %s; final: %s", n, verdict, last)
}

func main() {
	isChild := flag.Bool("child", false, "")
	addr := flag.String("addr", "", "")
	group := flag.String("group", "", "")
	trials := flag.Int("trials", 4, "parallel trials (separate groups)")
	watch := flag.Duration("watch", 60*time.Second, "how long to watch after C starts")
	workaround := flag.Bool("workaround", false, "remove members silent past their session timeout (devstack's reaper)")
	flag.Parse()
	if *isChild {
		child(*addr, *group)
		return
	}

	k, err := devstack.StartKafkaWith(devstack.KafkaOptions{Topics: []string{topic}, Partitions: 8, KeepDeadMembers: !*workaround})
	if err != nil {
		log.Fatal(err)
	}
	defer k.Close()
	self, _ := os.Executable()
	ad := k.Brokers[0]

	res := make(chan string, *trials)
	for i := range *trials {
		go trial(self, ad, i, *watch, res)
		time.Sleep(500 * time.Millisecond)
	}
	var out []string
	for range *trials {
		out = append(out, <-res)
	}
	sort.Strings(out)
	fmt.Printf("==== SUMMARY (workaround %v: %d dead members removed) ====\n", *workaround, k.Reaped())
	for _, s := range out {
		fmt.Println(s)
	}
}
