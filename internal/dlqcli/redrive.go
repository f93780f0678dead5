package dlqcli

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/IBM/sarama"

	"github.com/sagabridge/sagabridge/dlq"
	"github.com/sagabridge/sagabridge/internal/kafkatxn"
	"github.com/sagabridge/sagabridge/internal/topicid"
)

// redrive is `bridge dlq redrive`.
func (c *command) redrive(ctx context.Context, args []string) int {
	t := c.flags("-brokers h:p[,h:p] (-topic T | -source S [-suffix .dlq]) (-partition P -offset O | [-class C] [-workflow-id ID] [-since T] [-until T] | -all) [-max-redrives 3] [-force] [-dry-run]")
	partition, offset := c.position(" to redrive")
	var f dlq.Filter
	c.filterFlags(&f)
	all := c.Flags.Bool("all", false, "redrive every entry of the DLQ (required when no record or filter is selected)")
	maxRedrives := c.Flags.Int("max-redrives", 3, "refuse entries already redriven this many times")
	dryRun := c.Flags.Bool("dry-run", false, "print what would be produced, produce nothing")
	force := c.Flags.Bool("force", false, "redrive entries that were redriven before (recorded in <dlq topic>.redrives)")
	if code, ok := c.Parse(args); !ok {
		return code
	}
	set := c.Set()
	if err := t.resolve(set); err != nil {
		return c.UsageError("%v", err)
	}
	if err := checkPosition(set, *partition, *offset, false); err != nil {
		return c.UsageError("%v", err)
	}
	if err := checkWindow(f); err != nil {
		return c.UsageError("%v", err)
	}
	single := set["partition"]
	switch {
	case *maxRedrives < 1:
		return c.UsageError("-max-redrives %d: must be 1 or more", *maxRedrives)
	case single && !f.IsZero():
		return c.UsageError("-partition/-offset select one record: they cannot be combined with -class, -workflow-id, -since or -until")
	case *all && (single || !f.IsZero()):
		return c.UsageError("-all redrives every entry: it cannot be combined with -partition/-offset or a filter")
	case !*all && !single && f.IsZero():
		return c.UsageError("no entries selected: give -partition and -offset, a filter (-class, -workflow-id, -since, -until), or -all to redrive every entry of %s", t.dlqTopic)
	}

	client, err := t.connect(ctx, nil) // to read; the redrives go through redriveProducer
	if err != nil {
		return c.Fail(err)
	}
	defer func() { _ = client.Close() }()

	var entries []dlq.Entry
	var bad []*dlq.BadRecord
	if single {
		msg, err := dlq.ReadRecord(ctx, client, t.dlqTopic, int32(*partition), *offset)
		if err != nil {
			return c.Fail(err)
		}
		e, err := dlq.EntryOf(msg)
		if err != nil {
			return c.Fail(err)
		}
		entries = []dlq.Entry{e}
	} else {
		entries, err = dlq.Read(ctx, client, t.dlqTopic, f)
		bad = dlq.BadRecords(err)
		if err != nil && len(bad) == 0 {
			return c.Fail(fmt.Errorf("read %s: %w", t.dlqTopic, err))
		}
	}

	// The producer starts before the redrive records are read: its start
	// fences any other redrive of this DLQ still running and settles that
	// run's open transaction, so what that run redrove is all in the
	// records read next. (Read first, a redrive another run committed
	// before the fence went unseen and was redriven again.)
	var producer sarama.SyncProducer
	defer func() {
		if producer != nil {
			_ = producer.Close()
		}
	}()
	if !*dryRun && len(entries) > 0 {
		if err := createRedrivesTopic(client, t.dlqTopic); err != nil {
			return c.Fail(err)
		}
		if producer, err = t.redriveProducer(ctx, largest(entries)); err != nil {
			return c.Fail(err)
		}
	}
	// The DLQ topic's ID, which the redrive records carry: one deleted and
	// created again starts its offsets again.
	ids, err := topicid.Lookup(client, []string{t.dlqTopic})
	if err != nil {
		return c.Fail(err)
	}
	dlqID := ids[t.dlqTopic]
	// Entries redriven before, recorded by earlier runs.
	redrives, err := dlq.ReadRedrives(ctx, client, t.dlqTopic)
	if err != nil {
		return c.Fail(fmt.Errorf("read the redrive records: %w", err))
	}
	kept := &retentions{client: client, byTopic: map[string]retention{}}
	var redriven, refused, again, reduced, failed int
	thisRun := map[string]string{} // RecordID to the entry of this run that redrives it
	for _, e := range entries {
		if err := ctx.Err(); err != nil {
			if *dryRun {
				return c.Fail(fmt.Errorf("stopped before %d@%d (a dry run: nothing was redriven): %w", e.Partition, e.Offset, err))
			}
			return c.Fail(fmt.Errorf("stopped before %d@%d: %d redriven before it (each recorded; run it again for the rest, which refuses those as already redriven): %w",
				e.Partition, e.Offset, redriven, err))
		}
		from := fmt.Sprintf("%d@%d", e.Partition, e.Offset)
		msg, err := dlq.RedriveMessage(e, *maxRedrives)
		var limit *dlq.LimitError
		if errors.As(err, &limit) {
			refused++
			fmt.Fprintf(c.stdout, "refused        %-10s already redriven %d times, the maximum is %d (-max-redrives); original %s/%d@%d\n",
				from, limit.Redrives, limit.Max, e.Failure.Topic, e.Failure.Partition, e.Failure.Offset)
			continue
		}
		var reducedErr *dlq.ReducedError
		if errors.As(err, &reducedErr) {
			reduced++
			fmt.Fprintf(c.stdout, "refused        %-10s written in reduced form (%s); original %s/%d@%d\n",
				from, reducedErr.Dropped, e.Failure.Topic, e.Failure.Partition, e.Failure.Offset)
			continue
		}
		if err != nil {
			return c.Fail(err)
		}
		if before, ok := redrives.Of(dlqID, e.Partition, e.Offset); ok && !*force {
			again++
			fmt.Fprintf(c.stdout, "refused        %-10s already redriven at %s to %s (-force redrives it again)\n",
				from, before.At.Format(time.RFC3339), before.To)
			continue
		}
		record := dlq.RecordID(e.Failure)
		if first, ok := thisRun[record]; ok { // even with -force: one redrive of the record per run
			again++
			fmt.Fprintf(c.stdout, "refused        %-10s a copy of %s, redriven in this run (the record %s/%d@%d dead-lettered twice)\n",
				from, first, e.Failure.Topic, e.Failure.Partition, e.Failure.Offset)
			continue
		}
		if before, ok := redrives.OfRecord(record); ok && !*force {
			again++
			fmt.Fprintf(c.stdout, "refused        %-10s already redriven at %s to %s from %d@%d, a dead letter of the same record %s/%d@%d (-force redrives it again)\n",
				from, before.At.Format(time.RFC3339), before.To, before.Partition, before.Offset, e.Failure.Topic, e.Failure.Partition, e.Failure.Offset)
			continue
		}
		what := fmt.Sprintf("key=%s %s=%d", inline(e.Failure.Key), dlq.HeaderRedriveCount, e.Redrives+1)
		if why := kept.stale(msg); why != "" {
			msg.Timestamp = time.Time{} // sarama stamps it with this host's clock
			what += " timestamp=now (" + why + ")"
		}
		if *dryRun {
			thisRun[record] = from
			redriven++
			fmt.Fprintf(c.stdout, "would redrive  %-10s -> %s  %s\n", from, msg.Topic, what)
			continue
		}
		to, err := redriveOne(producer, e, msg, t.dlqTopic, dlqID)
		if err != nil && kafkatxn.Fenced(err) {
			fmt.Fprintf(c.stdout, "stopped        %-10s another redrive of %s started\n", from, t.dlqTopic)
			return c.Fail(fmt.Errorf("another redrive of %s started and fenced this one (transactional ID %s): %s was not redriven by this run, and this run writes nothing more; %d redriven before it",
				t.dlqTopic, redriveTransactionalID(t.dlqTopic), from, redriven))
		}
		if err != nil && dlq.TooLarge(err) { // this record's: the others may go
			failed++
			fmt.Fprintf(c.stdout, "failed         %-10s -> %s: %v\n", from, msg.Topic, err)
			fmt.Fprintf(c.stderr, "bridge dlq redrive: %s not redriven: too large for %s (its max.message.bytes, or the broker's message.max.bytes): %v\n", from, msg.Topic, err)
			continue
		}
		if err != nil && refusedRecord(err) { // this record's too: the broker refuses it, not the run
			failed++
			fmt.Fprintf(c.stdout, "failed         %-10s -> %s: %v\n", from, msg.Topic, err)
			fmt.Fprintf(c.stderr, "bridge dlq redrive: %s not redriven: %s refuses the record (for a timestamp, its message.timestamp.before.max.ms or after.max.ms): %v\n", from, msg.Topic, err)
			continue
		}
		if err != nil {
			fmt.Fprintf(c.stdout, "failed         %-10s -> %s: %v\n", from, msg.Topic, err)
			return c.Fail(fmt.Errorf("redrive DLQ record %s to %s: %w (not redriven unless its commit, whose outcome is unknown only if the error says so, went through: run the redrive again to find out; %d redriven before it)", from, msg.Topic, err, redriven))
		}
		redriven++
		thisRun[record] = from
		fmt.Fprintf(c.stdout, "redriven       %-10s -> %s  %s\n", from, to, what)
	}
	if *dryRun {
		fmt.Fprintf(c.stdout, "dry run: %d would be redriven, %d refused; nothing was produced\n", redriven, refused+reduced+again)
	} else {
		fmt.Fprintf(c.stdout, "%d redriven, %d refused", redriven, refused+reduced+again)
		if failed > 0 {
			fmt.Fprintf(c.stdout, ", %d failed", failed)
		}
		fmt.Fprintln(c.stdout)
	}
	for _, b := range bad {
		fmt.Fprintf(c.stderr, "bridge dlq redrive: %v\n", b)
	}
	if refused > 0 {
		fmt.Fprintf(c.stderr, "bridge dlq redrive: %d entries refused: redriven -max-redrives (%d) times already\n", refused, *maxRedrives)
	}
	if reduced > 0 {
		fmt.Fprintf(c.stderr, "bridge dlq redrive: %d entries refused: written in reduced form (the value dropped, the key or headers maybe cut), "+
			"so not the original records; redrive those from their original topic while it retains them\n", reduced)
	}
	if again > 0 {
		fmt.Fprintf(c.stderr, "bridge dlq redrive: %d entries refused: they, or another dead letter of the same record, were redriven before (recorded in %s, or in this run); -force redrives those recorded again\n",
			again, dlq.RedrivesTopic(t.dlqTopic))
	}
	if refused > 0 || again > 0 || reduced > 0 || failed > 0 || len(bad) > 0 {
		return exitFail
	}
	return exitOK
}

// createRedrivesTopic creates the compacted topic that records redrives,
// unless it exists. The admin shares client, which the caller closes.
func createRedrivesTopic(client sarama.Client, dlqTopic string) error {
	topic := dlq.RedrivesTopic(dlqTopic)
	if parts, err := client.Partitions(topic); err == nil && len(parts) > 0 {
		return nil
	}
	admin, err := sarama.NewClusterAdminFromClient(client)
	if err != nil {
		return fmt.Errorf("create %s: %w", topic, err)
	}
	err = admin.CreateTopic(topic, &sarama.TopicDetail{NumPartitions: 1, ReplicationFactor: -1, ConfigEntries: dlq.RedrivesTopicConfig()}, false)
	if err != nil && !errors.Is(err, sarama.ErrTopicAlreadyExists) {
		return fmt.Errorf("create %s (where redrives are recorded): %w", topic, err)
	}
	return nil
}

// redriveTransactionalID is the transactional ID of the producer that
// redrives dlqTopic's entries: two redrives of one DLQ at once fence each
// other rather than both writing.
func redriveTransactionalID(dlqTopic string) string { return "sagabridge-redrive-" + dlqTopic }

// largest is the size of the largest record among entries' values, keys
// and headers, as sarama counts it.
func largest(entries []dlq.Entry) int {
	n := 0
	for _, e := range entries {
		size := len(e.Failure.Key) + len(e.Failure.Value)
		for _, h := range e.Failure.Headers {
			size += len(h.Key) + len(h.Value)
		}
		n = max(n, size)
	}
	return n
}

// redriveProducer starts the transactional producer of t's redrives, on a
// client of its own, taking records of up to largest bytes and more (the
// broker and the topic judge their size; sarama's default of 1 MiB refused
// entries the DLQ holds); closing it closes the client.
func (t *target) redriveProducer(ctx context.Context, largest int) (sarama.SyncProducer, error) {
	client, err := t.connect(ctx, func(cfg *sarama.Config) {
		// sarama refuses a MaxMessageBytes at or over its request size.
		cfg.Producer.MaxMessageBytes = min(max(cfg.Producer.MaxMessageBytes, largest+64<<10), int(sarama.MaxRequestSize)-1)
		cfg.Producer.Partitioner = dlq.RedrivePartitioner // back to the original partition
		cfg.Producer.Idempotent = true
		cfg.Producer.RequiredAcks = sarama.WaitForAll
		cfg.Producer.Return.Successes = true
		cfg.Producer.Retry.Max = 10
		cfg.Producer.Transaction.ID = redriveTransactionalID(t.dlqTopic)
		cfg.Net.MaxOpenRequests = 1
	})
	if err != nil {
		return nil, err
	}
	producer, err := kafkatxn.ProducerFromClient(client)
	if err != nil {
		return nil, fmt.Errorf("start the transactional producer %s: %w", redriveTransactionalID(t.dlqTopic), err)
	}
	return producer, nil
}

// redriveOne writes msg, e's record, to its topic and the record of its
// redrive to dlqTopic's redrives topic, in one transaction: a
// read_committed consumer sees the redriven record only if its redrive is
// recorded, so a later run never redrives it twice. It returns where the
// record went (topic/partition@offset); on an error the transaction is
// aborted (a commit whose answer was lost may still have gone through; the
// redrive is then recorded, and a later run refuses it).
func redriveOne(producer sarama.SyncProducer, e dlq.Entry, msg *sarama.ProducerMessage, dlqTopic, dlqID string) (string, error) {
	if err := kafkatxn.Ready(producer); err != nil {
		return "", err
	}
	if err := producer.BeginTxn(); err != nil {
		return "", fmt.Errorf("begin a transaction: %w", err)
	}
	p, o, err := producer.SendMessage(msg)
	if err != nil {
		return "", kafkatxn.Abort(producer, err)
	}
	to := fmt.Sprintf("%s/%d@%d", msg.Topic, p, o)
	rec, err := dlq.Redrive{TopicID: dlqID, Partition: e.Partition, Offset: e.Offset, At: time.Now().UTC(), To: to, Record: dlq.RecordID(e.Failure)}.Message(dlqTopic)
	if err == nil {
		_, _, err = producer.SendMessage(rec)
	}
	if err != nil {
		return "", kafkatxn.Abort(producer, fmt.Errorf("record the redrive in %s: %w", dlq.RedrivesTopic(dlqTopic), err))
	}
	if err := producer.CommitTxn(); err != nil {
		return "", kafkatxn.Abort(producer, fmt.Errorf("commit: %w", err))
	}
	return to, nil
}

// refusedRecord reports whether err is the broker refusing the record
// itself (its timestamp out of the topic's range, a record the topic's
// settings refuse, such as a null key on a compacted topic, or one it
// finds corrupt): the transaction was aborted, nothing was written, and
// the other entries may still go.
func refusedRecord(err error) bool {
	return errors.Is(err, sarama.ErrInvalidTimestamp) || errors.Is(err, sarama.ErrInvalidRecord) || errors.Is(err, sarama.ErrInvalidMessage)
}

// retentions reads each source topic's retention.ms once, to decide
// whether a redriven record keeps its original timestamp (stale).
type retentions struct {
	client  sarama.Client
	byTopic map[string]retention
}

// retention is a topic's retention.ms: keep is -1 for none (or a topic
// compacted only, which deletes nothing by time); err is why it could not
// be read.
type retention struct {
	keep time.Duration
	err  error
}

// stale says why msg, a redrive, must not keep its original timestamp, or
// "" when it may: Kafka deletes a segment once its newest timestamp is
// past the topic's retention.ms, so in a quiet partition a record stamped
// that long ago goes within minutes, maybe before the bridge reads it. It
// may not when it is within a day (or half the retention, if less) of
// that, or when the retention cannot be read.
func (rs *retentions) stale(msg *sarama.ProducerMessage) string {
	if msg.Timestamp.IsZero() {
		return ""
	}
	r, ok := rs.byTopic[msg.Topic]
	if !ok {
		r = rs.read(msg.Topic)
		rs.byTopic[msg.Topic] = r
	}
	switch {
	case r.err != nil:
		return fmt.Sprintf("the retention.ms of %s cannot be read, so a record stamped %s might be deleted before it is read: %v",
			msg.Topic, msg.Timestamp.UTC().Format(time.RFC3339), r.err)
	case r.keep < 0:
		return ""
	case time.Since(msg.Timestamp) > r.keep-min(24*time.Hour, r.keep/2):
		return fmt.Sprintf("the original %s is too near %s's retention.ms (%s): Kafka could delete the record before it is read",
			msg.Timestamp.UTC().Format(time.RFC3339), msg.Topic, r.keep)
	}
	return ""
}

// read reads topic's retention.ms.
func (rs *retentions) read(topic string) retention {
	admin, err := sarama.NewClusterAdminFromClient(rs.client) // not closed: that would close the shared client
	if err != nil {
		return retention{err: err}
	}
	entries, err := admin.DescribeConfig(sarama.ConfigResource{Type: sarama.TopicResource, Name: topic, ConfigNames: []string{"retention.ms", "cleanup.policy"}})
	if err != nil {
		return retention{err: err}
	}
	for _, e := range entries {
		if e.Name == "cleanup.policy" && !strings.Contains(e.Value, "delete") {
			return retention{keep: -1} // compacted only: nothing is deleted by time
		}
	}
	for _, e := range entries {
		if e.Name != "retention.ms" {
			continue
		}
		ms, err := strconv.ParseInt(e.Value, 10, 64)
		if err != nil {
			return retention{err: fmt.Errorf("retention.ms %q: %w", e.Value, err)}
		}
		if ms < 0 {
			return retention{keep: -1}
		}
		return retention{keep: time.Duration(ms) * time.Millisecond}
	}
	return retention{err: errors.New("the broker did not say")}
}
