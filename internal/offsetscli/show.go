package offsetscli

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"strconv"
	"text/tabwriter"

	"github.com/IBM/sarama"
)

// show is `bridge offsets show`.
func (c *command) show(ctx context.Context, args []string) int {
	t := c.flags("[-config bridge.yaml] [-brokers h:p] [-group G] [-topic T,...] [-metrics URL ...] [-json]")
	var urls []string
	c.Flags.Func("metrics", "a running bridge's metrics `URL` (http://host:9464 of metrics.listen; repeat for each bridge of the group): read why its partitions are paused", func(s string) error {
		u, err := metricsURL(s)
		urls = append(urls, u)
		return err
	})
	asJSON := c.Flags.Bool("json", false, "print one JSON document instead of a table")
	if code, ok := c.Parse(args); !ok {
		return code
	}
	if err := t.resolve(c.environ, c.Set()); err != nil {
		return c.UsageError("%v", err)
	}
	k, err := t.connect(ctx)
	if err != nil {
		return c.Fail(err)
	}
	defer func() { _ = k.Close() }()
	rep, err := report(ctx, k, t)
	if err != nil {
		return c.Fail(err)
	}
	var scrapeErr error
	if len(urls) > 0 {
		var ps map[tp]pauseState
		ps, scrapeErr = pauses(ctx, urls)
		rep.addPauses(ps)
	}
	if *asJSON {
		enc := json.NewEncoder(c.stdout)
		enc.SetIndent("", "  ")
		if err := enc.Encode(rep); err != nil {
			return c.Fail(err)
		}
	} else {
		rep.writeTable(c.stdout)
	}
	if scrapeErr != nil {
		return c.Fail(scrapeErr)
	}
	return exitOK
}

// Report is what show prints: the group and every partition.
type Report struct {
	Group
	// Isolation is the level the bridge reads at, which End follows.
	Isolation string `json:"isolation"`
	// Partitions is every partition of the topics, in topic order.
	Partitions []PartitionReport `json:"partitions"`
	// pausesKnown is set once -metrics were read.
	pausesKnown bool
}

// PartitionReport is one partition as show prints it.
type PartitionReport struct {
	// Topic and Partition name the partition.
	Topic     string `json:"topic"`
	Partition int32  `json:"partition"`
	// Committed is nil when the group has committed no offset.
	Committed *int64 `json:"committed"`
	// Metadata is the string committed with it.
	Metadata string `json:"metadata,omitempty"`
	// LogStart, End and HighWatermark are as in Partition.
	LogStart      int64 `json:"log_start"`
	End           int64 `json:"log_end"`
	HighWatermark int64 `json:"high_watermark"`
	// Lag is as Partition.Lag computes it.
	Lag int64 `json:"lag"`
	// OutOfRange says the committed offset is outside the log
	// (Partition.OutOfRange): the bridge starts again at
	// kafka.initial_offset, and Lag counts from there.
	OutOfRange bool `json:"out_of_range,omitempty"`
	// Owner is the member ID that is assigned the partition, "" if none.
	Owner string `json:"owner,omitempty"`
	// PendingTransaction says a transaction still open is committing
	// another offset for the group (a transactional bridge's, or a stopped
	// one's until the broker aborts it): a move refuses until it ends.
	PendingTransaction bool `json:"pending_transaction,omitempty"`
	// Paused is set from -metrics: true with PauseReason when a bridge
	// reports the partition paused, false when it reports it flowing;
	// nil when no scraped bridge claims it.
	Paused      *bool  `json:"paused,omitempty"`
	PauseReason string `json:"pause_reason,omitempty"`
}

// report reads the group and its partitions from Kafka.
func report(ctx context.Context, k *cluster, t *target) (Report, error) {
	g, err := k.describe(ctx)
	if err != nil {
		return Report{}, err
	}
	parts, err := k.partitions(ctx, t.topicList)
	if err != nil {
		return Report{}, err
	}
	read, err := k.read(ctx, parts, false)
	if err != nil {
		return Report{}, err
	}
	pending, err := k.pendingCommits(ctx, parts)
	if err != nil {
		return Report{}, err
	}
	rep := Report{Group: g, Isolation: "read_committed", Partitions: make([]PartitionReport, len(read))}
	if k.isolation == sarama.ReadUncommitted {
		rep.Isolation = "read_uncommitted"
	}
	for i, p := range read {
		pr := PartitionReport{Topic: p.Topic, Partition: p.Partition, Metadata: p.Metadata, LogStart: p.LogStart,
			End: p.End, HighWatermark: p.HighWatermark, Lag: p.Lag(t.startOldest), OutOfRange: p.OutOfRange(), PendingTransaction: pending[tp{p.Topic, p.Partition}]}
		if p.Committed != noOffset {
			pr.Committed = &p.Committed
		}
		if m, ok := g.owner(tp{p.Topic, p.Partition}); ok {
			pr.Owner = m.ID
		}
		rep.Partitions[i] = pr
	}
	return rep, nil
}

// addPauses records what the scraped bridges say about each partition.
func (r *Report) addPauses(ps map[tp]pauseState) {
	r.pausesKnown = true
	for i := range r.Partitions {
		p := &r.Partitions[i]
		st, ok := ps[tp{p.Topic, p.Partition}]
		if !ok {
			continue
		}
		paused := st.Reason != ""
		p.Paused, p.PauseReason = &paused, st.Reason
	}
}

// writeTable prints the group line and the partitions as an aligned table.
func (r Report) writeTable(w io.Writer) {
	fmt.Fprintf(w, "group %s: %s, %d member(s); log end is the %s\n", r.ID, r.State, len(r.Members), endName(r.Isolation))
	for _, m := range r.Members {
		fmt.Fprintf(w, "  member %s\n", m)
	}
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	header := "TOPIC\tPARTITION\tCOMMITTED\tLOG-START\tLOG-END\tLAG\tOWNER"
	if r.pausesKnown {
		header += "\tPAUSED"
	}
	fmt.Fprintln(tw, header)
	open, pending, outside := false, false, false
	for _, p := range r.Partitions {
		committed := "-"
		if p.Committed != nil {
			committed = strconv.FormatInt(*p.Committed, 10)
		}
		if p.OutOfRange {
			committed += "!"
			outside = true
		}
		if p.PendingTransaction {
			committed += "+"
			pending = true
		}
		end := strconv.FormatInt(p.End, 10)
		if p.HighWatermark != p.End {
			end += "*"
			open = true
		}
		fmt.Fprintf(tw, "%s\t%d\t%s\t%d\t%s\t%d\t%s", p.Topic, p.Partition, committed, p.LogStart, end, p.Lag, orDash(p.Owner))
		if r.pausesKnown {
			fmt.Fprintf(tw, "\t%s", pauseCell(p))
		}
		fmt.Fprintln(tw)
	}
	_ = tw.Flush()
	if open {
		fmt.Fprintln(w, "* an open transaction holds records beyond this offset, up to the high watermark (-json: high_watermark)")
	}
	if outside {
		fmt.Fprintln(w, "! the committed offset is outside the log (its records deleted, or the log truncated): the bridge starts again at kafka.initial_offset, and LAG counts from there (-json: out_of_range)")
	}
	if pending {
		fmt.Fprintln(w, "+ a transaction still open is committing another offset (a transactional bridge's, or a stopped one's until the broker aborts it); move refuses until it ends (-json: pending_transaction)")
	}
}

// endName says what LOG-END is under isolation.
func endName(isolation string) string {
	if isolation == "read_uncommitted" {
		return "high watermark (read_uncommitted)"
	}
	return "last stable offset (read_committed)"
}

// pauseCell is the PAUSED column: the reason, "no", or "?" when no scraped
// bridge claims the partition.
func pauseCell(p PartitionReport) string {
	switch {
	case p.Paused == nil:
		return "?"
	case *p.Paused:
		return p.PauseReason
	}
	return "no"
}

// orDash shows an empty table cell as "-".
func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}
