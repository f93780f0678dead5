// Package offsetscli implements `bridge offsets`, the operator's view of
// the bridge's consumer group and its tool for moving a stuck partition.
//
//	bridge offsets [show] [-config bridge.yaml] [-brokers h:p] [-group G] [-topic T,...] [-metrics URL ...] [-json]
//	bridge offsets move   [-config bridge.yaml] [-topic T] [-partition P] (--to-offset N | --to-time RFC3339 | --skip-one) [-dry-run]
//
// show prints, for every partition of the routed topics (or -topic), the
// group's committed offset, the log start, the log end the bridge reads up
// to (the last stable offset under read_committed, the bridge's default;
// the high watermark under read_uncommitted), the lag between them, the
// member that owns the partition and, with -metrics pointing at the
// bridges' metrics endpoints, why a partition is paused
// (sagabridge_partition_paused).
//
// move commits a new offset for the group with a plain OffsetCommit
// (generation -1, no member), which Kafka accepts only while the group has
// no members. It refuses while the group is not Empty or Dead, naming the
// active members, and refuses an offset outside a partition's log (before
// its log start or beyond its log end), naming the partition and the valid
// range. The metadata string committed with the old offset is kept (the
// bridge commits none today). --to-time moves to the first offset whose
// record timestamp is at or after the time (ListOffsets by timestamp), or
// to the log end when no record is that recent; --skip-one moves past the
// record the group reads next (read as the group reads it, so past commit
// markers and aborted records), a poison record the bridge cannot get past.
//
// Exit status: 0 on success, 1 when something failed (Kafka, a refused
// move, a metrics endpoint that did not answer), 2 for a missing or bad
// flag.
//
// It reads its settings through config and internal/connect, like
// internal/dlqcli, and must not import the bridge engine: what a running
// bridge knows (pause reasons) it reads from the bridge's /metrics.
package offsetscli
