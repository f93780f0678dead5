package e2e

import (
	"context"
	"errors"
	"fmt"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/IBM/sarama"
	"github.com/google/uuid"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/sagabridge/sagabridge/dlq"
	"github.com/sagabridge/sagabridge/eos"
	"github.com/sagabridge/sagabridge/internal/devstack"
	"github.com/sagabridge/sagabridge/internal/kafkatxn"
)

// kcatRecord is one record as kcat (librdkafka, an independent client) read it.
type kcatRecord struct {
	Partition int32
	Offset    int64
	Key       string
	Headers   map[string]string
	Value     string
}

// kcat reads every record of topic from the beginning to its end with the
// given isolation level ("read_committed" or "read_uncommitted").
func kcat(t *testing.T, topic, isolation string) []kcatRecord {
	t.Helper()
	bin, err := exec.LookPath("kcat")
	require.NoError(t, err, "kcat (Debian package kcat) is not installed; `make test` installs it")
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, "-C", "-b", stack.Kafka.Brokers[0], "-t", topic, "-o", "beginning", "-e", "-q",
		"-X", "isolation.level="+isolation, "-f", `%p\t%o\t%k\t%h\t%s\n`)
	out, err := cmd.CombinedOutput()
	require.NoError(t, err, "kcat: %s", out)
	var recs []kcatRecord
	for line := range strings.Lines(string(out)) {
		f := strings.SplitN(strings.TrimSuffix(line, "\n"), "\t", 5)
		require.Len(t, f, 5, "kcat line %q", line)
		p, err := strconv.ParseInt(f[0], 10, 32)
		require.NoError(t, err, "kcat line %q", line)
		o, err := strconv.ParseInt(f[1], 10, 64)
		require.NoError(t, err, "kcat line %q", line)
		hs := map[string]string{}
		for h := range strings.SplitSeq(f[3], ",") {
			if k, v, ok := strings.Cut(h, "="); ok {
				hs[k] = v
			}
		}
		recs = append(recs, kcatRecord{Partition: int32(p), Offset: o, Key: f[2], Headers: hs, Value: f[4]})
	}
	return recs
}

// eosTopics creates an input topic with partitions, its DLQ and an output
// topic, all named after the test.
func eosTopics(t *testing.T, partitions int32) (in, out string) {
	t.Helper()
	id := uuid.NewString()[:8]
	base := strings.ToLower(unsafeName.ReplaceAllString(t.Name(), "-")) + "-" + id
	in, out = base+"-in", base+"-out"
	require.NoError(t, stack.Kafka.Cluster.CreateTopic(in, partitions, nil))
	require.NoError(t, stack.Kafka.Cluster.CreateTopic(out, partitions, nil))
	require.NoError(t, stack.Kafka.Cluster.CreateTopic(dlq.TopicFor(in, dlq.DefaultSuffix), 1, nil))
	return in, out
}

// produceValues writes one record per value (key "k<i % keys>") and
// returns nothing until the broker acknowledged them all.
func produceValues(t *testing.T, topic string, values []string, keys int) {
	t.Helper()
	cfg := sarama.NewConfig()
	cfg.Version = sarama.V3_6_0_0
	cfg.Producer.Return.Successes = true
	cfg.Producer.RequiredAcks = sarama.WaitForAll
	p, err := sarama.NewSyncProducer(stack.Kafka.Brokers, cfg)
	require.NoError(t, err)
	defer p.Close()
	msgs := make([]*sarama.ProducerMessage, len(values))
	for i, v := range values {
		msgs[i] = &sarama.ProducerMessage{Topic: topic, Key: sarama.StringEncoder(fmt.Sprintf("k%d", i%keys)), Value: sarama.StringEncoder(v)}
	}
	for chunk := range slicesChunk(msgs, 1000) {
		require.NoError(t, p.SendMessages(chunk))
	}
}

func slicesChunk[T any](s []T, n int) func(func([]T) bool) {
	return func(yield func([]T) bool) {
		for i := 0; i < len(s); i += n {
			if !yield(s[i:min(i+n, len(s))]) {
				return
			}
		}
	}
}

// committedTotal is the sum of group's committed offsets on topic; 0 while
// the group does not exist yet, -1 when the broker cannot say.
func committedTotal(t *testing.T, group, topic string) int64 {
	t.Helper()
	admin, err := sarama.NewClusterAdmin(stack.Kafka.Brokers, saramaAdminConfig())
	if err != nil {
		t.Logf("committed offsets of %s: %v", group, err)
		return -1
	}
	defer admin.Close()
	resp, err := admin.ListConsumerGroupOffsets(group, nil)
	if errors.Is(err, sarama.ErrGroupIDNotFound) {
		return 0
	}
	if err != nil {
		t.Logf("committed offsets of %s: %v", group, err)
		return -1
	}
	var sum int64
	for _, b := range resp.Blocks[topic] {
		if b.Offset > 0 {
			sum += b.Offset
		}
	}
	return sum
}

func saramaAdminConfig() *sarama.Config {
	c := sarama.NewConfig()
	c.Version = sarama.V3_6_0_0
	return c
}

// sources maps each output's source position ("topic/partition/offset",
// the prefix the enrich example writes) to how often it appears.
func sources(recs []kcatRecord) map[string]int {
	n := map[string]int{}
	for _, r := range recs {
		src, _, _ := strings.Cut(r.Value, " ")
		n[src]++
	}
	return n
}

var buildEnrich = sync.OnceValues(func() (string, error) {
	bin := filepath.Join(filepath.Dir(bridgeBin), "enrich")
	if out, err := exec.Command("go", "build", "-race", "-o", bin, "../examples/enrich").CombinedOutput(); err != nil {
		return "", fmt.Errorf("build examples/enrich: %w\n%s", err, out)
	}
	return bin, nil
})

// The Processor (the examples/enrich binary) is killed with SIGKILL three
// times while it transforms 20,000 records, some of them poison. kcat,
// reading read_committed, sees every output exactly once and every poison
// record in the DLQ exactly once; reading read_uncommitted shows what the
// killed transactions left behind and read_committed hid.
func TestEOSProcessorKilledThreeTimesOutputsEachRecordOnce(t *testing.T) {
	const records, poisonEvery = 20_000, 2_000
	in, out := eosTopics(t, 4)
	bin, err := buildEnrich()
	require.NoError(t, err)
	values := make([]string, records)
	for i := range values {
		values[i] = fmt.Sprintf("v%d", i)
		if i%poisonEvery == poisonEvery-1 {
			values[i] = fmt.Sprintf("POISON-%d", i)
		}
	}
	produceValues(t, in, values, 500)

	group := "enrich-" + uuid.NewString()[:8]
	var logs syncBuffer
	start := func() *devstack.Process {
		p, err := devstack.StartProcess(&logs, bin, "-brokers", stack.Kafka.Brokers[0], "-group", group,
			"-in", in, "-out", out, "-txn-prefix", group, "-delay", "1ms", "-batch", "200", "-session-timeout", "6s")
		require.NoError(t, err)
		t.Cleanup(p.Kill)
		return p
	}
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("processor output:\n%s", lastLines(logs.String(), 60))
		}
	})
	rng := seededRand(t, 7)
	for kill := range 3 {
		p := start()
		before := committedTotal(t, group, in)
		target := before + int64(1000+rng.IntN(3000))
		require.Eventually(t, func() bool { return committedTotal(t, group, in) >= target }, 90*time.Second, 50*time.Millisecond,
			"processor %d never committed past %d", kill+1, target)
		// A batch takes about 200 ms (200 records, 1 ms each) and sends its
		// outputs every 100 records: wait until a transaction is open with
		// outputs in the log, then kill, so its outputs must be aborted.
		require.Eventually(t, func() bool { return openTransactionOutputs(t, out) > 0 }, 30*time.Second, time.Millisecond,
			"no transaction of processor %d was ever seen open with outputs in the log", kill+1)
		p.Kill()
		t.Logf("kill %d at %d committed records", kill+1, committedTotal(t, group, in))
	}
	p := start()
	require.Eventually(t, func() bool { return committedTotal(t, group, in) == records }, 3*time.Minute, 100*time.Millisecond,
		"the last processor never committed every record")
	require.NoError(t, p.Stop(20*time.Second))

	committed := kcat(t, out, "read_committed")
	poison := records / poisonEvery
	assert.Len(t, committed, records-poison, "read_committed outputs")
	seen := sources(committed)
	for src, n := range seen {
		assert.Equal(t, 1, n, "output of %s", src)
	}
	assert.Len(t, seen, records-poison, "distinct inputs with an output")

	dead := kcat(t, dlq.TopicFor(in, dlq.DefaultSuffix), "read_committed")
	assert.Len(t, dead, poison, "DLQ records (read_committed)")
	deadAt := map[string]int{}
	for _, r := range dead {
		assert.True(t, strings.HasPrefix(r.Value, "POISON-"), "DLQ value %q is the original bytes", r.Value)
		assert.Equal(t, string(dlq.ClassProcess), r.Headers[dlq.HeaderErrorClass])
		deadAt[r.Headers[dlq.HeaderPartition]+"@"+r.Headers[dlq.HeaderOffset]]++
	}
	for at, n := range deadAt {
		assert.Equal(t, 1, n, "DLQ record for %s", at)
	}
	assert.Len(t, deadAt, poison, "distinct poison records in the DLQ")

	uncommitted := kcat(t, out, "read_uncommitted")
	t.Logf("outputs: %d committed, %d in the log including aborted transactions", len(committed), len(uncommitted))
	assert.Greater(t, len(uncommitted), len(committed), "the kills left aborted outputs in the log, which read_committed skipped")
}

// openTransactionOutputs is how many records of topic's log are in
// transactions not yet committed or aborted: the log end (read_uncommitted)
// less the last stable offset (read_committed), over its partitions. The
// two are read one after the other, so a positive answer shows a
// transaction was open at the first read.
func openTransactionOutputs(t *testing.T, topic string) int64 {
	t.Helper()
	return logEnd(t, topic, sarama.ReadUncommitted) - logEnd(t, topic, sarama.ReadCommitted)
}

// A Processor that stalls past the rebalance timeout (a zombie) loses its
// partition; the next owner initialises the same transactional ID, which
// fences the zombie: when it wakes up its transaction fails, Run returns
// ErrFenced, and it committed nothing after its partition moved.
func TestEOSZombieIsFencedByTheNextOwner(t *testing.T) {
	in, out := eosTopics(t, 1)
	values := make([]string, 10)
	for i := range values {
		values[i] = fmt.Sprintf("v%d", i)
	}
	produceValues(t, in, values, 3)
	group := "zombie-" + uuid.NewString()[:8]
	cfg := eos.Config{
		Brokers: stack.Kafka.Brokers, Group: group, Topics: []string{in}, TransactionalIDPrefix: group,
		MaxBatch: 5, Linger: 200 * time.Millisecond, SessionTimeout: 6 * time.Second, RebalanceTimeout: 3 * time.Second,
		TransactionTimeout: 3 * time.Second, // at most RebalanceTimeout
	}
	enrich := func(rec *sarama.ConsumerMessage) []eos.Output {
		return []eos.Output{{Topic: out, Key: rec.Key, Value: fmt.Appendf(nil, "%s/%d/%d %s", rec.Topic, rec.Partition, rec.Offset, rec.Value)}}
	}
	stuck, release := make(chan struct{}), make(chan struct{})
	var once sync.Once
	a, err := eos.New(cfg, func(_ context.Context, rec *sarama.ConsumerMessage) ([]eos.Output, error) {
		if rec.Offset == 5 {
			once.Do(func() { close(stuck) })
			<-release // a long GC pause or a hung call: ignores its context
		}
		return enrich(rec), nil
	}, nil)
	require.NoError(t, err)
	aDone := make(chan error, 1)
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	go func() { aDone <- a.Run(ctx) }()
	t.Cleanup(func() { // never leave the zombie blocked
		select {
		case <-release:
		default:
			close(release)
		}
	})

	select {
	case <-stuck:
	case <-time.After(60 * time.Second):
		t.Fatal("processor A never reached offset 5")
	}
	require.Equal(t, int64(5), a.Stats().Records, "A committed its first batch before stalling")

	b, err := eos.New(cfg, func(_ context.Context, rec *sarama.ConsumerMessage) ([]eos.Output, error) { return enrich(rec), nil }, nil)
	require.NoError(t, err)
	bCtx, bCancel := context.WithCancel(context.Background())
	bDone := make(chan error, 1)
	go func() { bDone <- b.Run(bCtx) }()
	t.Cleanup(bCancel)
	require.Eventually(t, func() bool { return b.Stats().Records == 5 }, 60*time.Second, 50*time.Millisecond,
		"B never took over the stalled partition")

	close(release) // the zombie wakes up and tries to commit offsets 5..9
	select {
	case err := <-aDone:
		require.ErrorIs(t, err, eos.ErrFenced)
	case <-time.After(60 * time.Second):
		t.Fatal("the zombie did not stop")
	}
	assert.Equal(t, int64(5), a.Stats().Records, "the zombie committed nothing after it was fenced")
	bCancel()
	require.NoError(t, <-bDone)

	got := kcat(t, out, "read_committed")
	assert.Len(t, got, 10)
	for src, n := range sources(got) {
		assert.Equal(t, 1, n, "output of %s", src)
	}
}

// Failures inside a batch: a record whose function fails twice is retried
// from the last committed offset (nothing skipped, nothing doubled); one
// that always fails and one marked Permanent are dead-lettered. The first
// transaction, which carries the Permanent record's dead letter, is aborted
// by an injected broker error on its offset commit: the DLQ log then holds
// that dead letter twice, while read_committed shows it once, committed with
// its offset in the same transaction.
func TestEOSRetriesRewindAndDeadLettersInTheOffsetsTransaction(t *testing.T) {
	in, out := eosTopics(t, 1)
	values := make([]string, 20)
	for i := range values {
		values[i] = fmt.Sprintf("v%d", i)
	}
	values[4], values[8], values[15] = "POISON", "BROKEN", "FLAKY"
	produceValues(t, in, values, 4)
	group := "rewind-" + uuid.NewString()[:8]

	// The first offset commit of the partition's transactional ID fails
	// with an abortable error: the whole transaction must roll back.
	txnID := kafkatxn.TransactionalID(group, group, in, 0)
	fault := stack.Kafka.Cluster.Fault(kfake.Fault{
		Keys: []kmsg.Key{kmsg.TxnOffsetCommit}, TxnID: txnID, Err: kerr.GroupAuthorizationFailed,
	})
	t.Cleanup(fault.Remove)

	var mu sync.Mutex
	calls := map[int64]int{}
	p, err := eos.New(eos.Config{
		Brokers: stack.Kafka.Brokers, Group: group, Topics: []string{in}, TransactionalIDPrefix: group,
		MaxAttempts: 3, RetryInitial: 20 * time.Millisecond, RetryMax: 100 * time.Millisecond, Linger: 300 * time.Millisecond,
	}, func(_ context.Context, rec *sarama.ConsumerMessage) ([]eos.Output, error) {
		mu.Lock()
		calls[rec.Offset]++
		n := calls[rec.Offset]
		mu.Unlock()
		switch string(rec.Value) {
		case "FLAKY":
			if n <= 2 {
				return nil, fmt.Errorf("flaky failure %d", n)
			}
		case "POISON":
			return nil, eos.Permanent(fmt.Errorf("cannot parse %q", rec.Value))
		case "BROKEN":
			return nil, fmt.Errorf("always broken")
		}
		return []eos.Output{{Topic: out, Key: rec.Key, Value: fmt.Appendf(nil, "%s/%d/%d %s", rec.Topic, rec.Partition, rec.Offset, rec.Value)}}, nil
	}, nil)
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- p.Run(ctx) }()
	t.Cleanup(cancel)
	require.Eventually(t, func() bool { return committedTotal(t, group, in) == 20 }, 60*time.Second, 50*time.Millisecond,
		"never committed all 20 offsets")
	cancel()
	require.NoError(t, <-done)

	st := p.Stats()
	assert.Equal(t, int64(20), st.Records)
	assert.Equal(t, int64(18), st.Outputs)
	assert.Equal(t, int64(2), st.DeadLettered)
	assert.Equal(t, int64(1), st.Aborts, "the injected failure aborted one transaction")
	mu.Lock()
	// Pass 1 commits 0..7 with POISON's dead letter and is aborted; pass 2
	// redoes 0..7 and commits; pass 3 dead-letters BROKEN at its third
	// failure and commits 8..14; FLAKY succeeds at its third call.
	assert.Equal(t, 2, calls[0], "the aborted transaction's records are processed again")
	assert.Equal(t, 2, calls[4], "POISON: once per pass, never retried on its own")
	assert.Equal(t, 3, calls[8], "BROKEN: MaxAttempts calls, then the DLQ")
	assert.Equal(t, 3, calls[15], "FLAKY: two failures, then success")
	assert.Equal(t, 1, calls[16], "records after the last failure: once")
	mu.Unlock()

	got := kcat(t, out, "read_committed")
	var offsets []string
	for _, r := range got {
		src, _, _ := strings.Cut(r.Value, " ")
		offsets = append(offsets, src[strings.LastIndex(src, "/")+1:])
	}
	assert.Equal(t, []string{"0", "1", "2", "3", "5", "6", "7", "9", "10", "11", "12", "13", "14", "15", "16", "17", "18", "19"},
		offsets, "every processable record once, in offset order (4 and 8 dead-lettered)")

	dlqTopic := dlq.TopicFor(in, dlq.DefaultSuffix)
	dead := kcat(t, dlqTopic, "read_committed")
	require.Len(t, dead, 2, "each dead letter once for read_committed")
	assert.Equal(t, "POISON", dead[0].Value)
	assert.Equal(t, "4", dead[0].Headers[dlq.HeaderOffset])
	assert.Equal(t, string(dlq.ClassProcess), dead[0].Headers[dlq.HeaderErrorClass])
	assert.Equal(t, "BROKEN", dead[1].Value)
	assert.Equal(t, "8", dead[1].Headers[dlq.HeaderOffset])
	assert.Equal(t, "3", dead[1].Headers[dlq.HeaderAttempts])
	assert.Equal(t, "always broken", dead[1].Headers[dlq.HeaderError])
	all := kcat(t, dlqTopic, "read_uncommitted")
	assert.Len(t, all, 3, "POISON's dead letter from the aborted transaction is in the log, hidden from read_committed")
}
