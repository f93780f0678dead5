package connect

import (
	"bytes"
	"testing"
	"time"

	"github.com/IBM/sarama"
	"github.com/stretchr/testify/require"
	"github.com/twmb/franz-go/pkg/kfake"

	"github.com/sagabridge/sagabridge/config"
)

// A record larger than one fetch must still be read, whole. A real Kafka
// broker cuts a partition's data at the fetch size, so a large record
// that is not first in the response arrives partial; sarama then grows
// that partition's fetch, but not past Consumer.Fetch.Max, and at the cap
// it skips the record (ErrMessageTooLarge, offset+1): a record lost. So
// the fetch growth must stay uncapped (0), however small Fetch.Default
// is. kfake never cuts a record batch, so the partial record cannot be
// driven here: this checks the setting that keeps it whole, and that
// records over the fetch size are read whole on the wire.
func TestFetchGrowthIsUncappedAndRecordsOverTheFetchSizeAreRead(t *testing.T) {
	c, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.SeedTopics(2, "big"))
	require.NoError(t, err)
	t.Cleanup(c.Close)

	cfg, err := SaramaConfig(config.Kafka{Version: "3.6.0", ClientID: "test"})
	require.NoError(t, err)
	require.Zero(t, cfg.Consumer.Fetch.Max, "a capped fetch growth skips every record larger than the cap")
	cfg.Producer.Return.Successes = true
	cfg.Producer.MaxMessageBytes = 1 << 20
	cfg.Producer.Partitioner = sarama.NewManualPartitioner
	p, err := sarama.NewSyncProducer(c.ListenAddrs(), cfg)
	require.NoError(t, err)
	defer p.Close()
	// Both partitions get a record well over 256 KiB (and under Kafka's
	// default 1 MB limit), so one of them is not the first non-empty
	// partition of a fetch, which alone a broker returns whole.
	sizes := map[int32]int{0: 600 << 10, 1: 700 << 10}
	for part, n := range sizes {
		_, _, err := p.SendMessage(&sarama.ProducerMessage{Topic: "big", Partition: part, Value: sarama.ByteEncoder(bytes.Repeat([]byte{'x'}, n))})
		require.NoError(t, err)
	}

	// Both partitions are read at once, so that one fetch asks for both.
	consumer, err := sarama.NewConsumer(c.ListenAddrs(), cfg)
	require.NoError(t, err)
	defer consumer.Close()
	pcs := map[int32]sarama.PartitionConsumer{}
	for part := range sizes {
		pc, err := consumer.ConsumePartition("big", part, sarama.OffsetOldest)
		require.NoError(t, err)
		defer pc.Close()
		pcs[part] = pc
	}
	for part, n := range sizes {
		select {
		case m := <-pcs[part].Messages():
			require.Len(t, m.Value, n, "partition %d", part)
		case err := <-pcs[part].Errors():
			t.Fatalf("partition %d: %v", part, err)
		case <-time.After(20 * time.Second):
			t.Fatalf("partition %d: the record never arrived", part)
		}
	}
}
