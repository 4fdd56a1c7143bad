// The Java reference client of benches/e2e.sh: the issue-8 setup driven by the RabbitMQ Java
// client (Debian's librabbitmq-client-java), the client the standard Java benchmark tool
// (PerfTest) is built on, with PerfTest's loop: each publisher and each consumer on a
// connection of its own, publisher confirms with a window, persistent mandatory publishes to
// a durable classic queue, manual multiple acks, and the latency a consumer computes from
// the System.nanoTime() the publisher wrote into the body (both in one JVM, as PerfTest does).
// It measures the same figures as warren's summary.csv, under the same column names, so the
// benchmark script reads both alike.
//
// Usage: java -cp amqp-client.jar:slf4j-api.jar:slf4j-nop.jar:. Reference \
//            URI PUBLISHERS CONSUMERS RATE SECONDS OUT.csv
//   RATE: messages per second over all publishers, 0 for as fast as possible.

import com.rabbitmq.client.AMQP;
import com.rabbitmq.client.Channel;
import com.rabbitmq.client.Connection;
import com.rabbitmq.client.ConnectionFactory;
import com.rabbitmq.client.DefaultConsumer;
import com.rabbitmq.client.Envelope;
import com.rabbitmq.client.MessageProperties;
import java.io.IOException;
import java.io.PrintWriter;
import java.lang.management.ManagementFactory;
import java.nio.ByteBuffer;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;
import java.util.NavigableSet;
import java.util.concurrent.ConcurrentSkipListSet;
import java.util.concurrent.Semaphore;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicLong;
import java.util.concurrent.locks.LockSupport;

public final class Reference {
    static final int SIZE = 100;
    static final int CONFIRM_WINDOW = 64;
    static final int PREFETCH = 200;
    static final int ACK_EVERY = 50;
    static final String QUEUE = "java-reference";

    static final AtomicLong published = new AtomicLong();
    static final AtomicLong delivered = new AtomicLong();
    static final AtomicLong returned = new AtomicLong();

    public static void main(String[] args) throws Exception {
        if (args.length != 6) {
            System.err.println("usage: Reference URI PUBLISHERS CONSUMERS RATE SECONDS OUT.csv");
            System.exit(2);
        }
        String uri = args[0];
        int publishers = Integer.parseInt(args[1]);
        int consumers = Integer.parseInt(args[2]);
        double rate = Double.parseDouble(args[3]);
        long durationNs = (long) (Double.parseDouble(args[4]) * 1e9);
        String out = args[5];

        ConnectionFactory factory = new ConnectionFactory();
        factory.setUri(uri);
        try (Connection setup = factory.newConnection("java-reference setup")) {
            Channel channel = setup.createChannel();
            channel.queueDelete(QUEUE);
            channel.queueDeclare(QUEUE, true, false, false, null);
        }

        List<Connection> connections = new ArrayList<>();
        List<Sink> sinks = new ArrayList<>();
        for (int i = 0; i < consumers; i++) {
            Connection connection = factory.newConnection("java-reference consumer " + i);
            connections.add(connection);
            Channel channel = connection.createChannel();
            channel.basicQos(PREFETCH);
            Sink sink = new Sink(channel);
            channel.basicConsume(QUEUE, false, sink);
            sinks.add(sink);
        }

        var os = (com.sun.management.OperatingSystemMXBean)
                ManagementFactory.getOperatingSystemMXBean();
        long cpuStart = os.getProcessCpuTime();
        long start = System.nanoTime();
        List<Thread> threads = new ArrayList<>();
        for (int i = 0; i < publishers; i++) {
            Connection connection = factory.newConnection("java-reference publisher " + i);
            connections.add(connection);
            long intervalNs = rate > 0 ? (long) (1e9 * publishers / rate) : 0;
            Thread thread = new Thread(() -> publish(connection, start, durationNs, intervalNs));
            thread.start();
            threads.add(thread);
        }
        for (Thread thread : threads) {
            thread.join();
        }
        // Drain: every published message delivered, or 10 s.
        long drainUntil = System.nanoTime() + TimeUnit.SECONDS.toNanos(10);
        while (delivered.get() < published.get() - returned.get() && System.nanoTime() < drainUntil) {
            Thread.sleep(1);
        }
        long end = Math.max(lastDelivery(sinks), start + 1);
        long cpuNs = os.getProcessCpuTime() - cpuStart;
        for (Sink sink : sinks) {
            sink.finish();
        }
        for (Connection connection : connections) {
            connection.close();
        }

        long count = delivered.get();
        double seconds = (end - start) / 1e9;
        long[] fromSent = merge(sinks, true);
        long[] fromIntended = merge(sinks, false);
        try (PrintWriter csv = new PrintWriter(out)) {
            csv.println("delivered_per_s,cpu_us_per_delivery,e2e_p50_us,e2e_sent_p50_us,"
                    + "e2e_sent_p99_us,published,delivered,returned");
            csv.printf("%.0f,%.2f,%.1f,%.1f,%.1f,%d,%d,%d%n", count / seconds,
                    count == 0 ? 0.0 : cpuNs / 1e3 / count, percentile(fromIntended, 0.50) / 1e3,
                    percentile(fromSent, 0.50) / 1e3, percentile(fromSent, 0.99) / 1e3,
                    published.get(), count, returned.get());
        }
        System.exit(count == published.get() - returned.get() ? 0 : 1);
    }

    /** One publisher: paced at intervalNs (0: as fast as the confirm window allows). */
    static void publish(Connection connection, long start, long durationNs, long intervalNs) {
        try {
            Channel channel = connection.createChannel();
            channel.confirmSelect();
            Semaphore window = new Semaphore(CONFIRM_WINDOW);
            NavigableSet<Long> unconfirmed = new ConcurrentSkipListSet<>();
            channel.addConfirmListener(
                    (tag, multiple) -> settle(unconfirmed, window, tag, multiple),
                    (tag, multiple) -> settle(unconfirmed, window, tag, multiple));
            channel.addReturnListener(r -> returned.incrementAndGet());
            byte[] body = new byte[SIZE];
            ByteBuffer header = ByteBuffer.wrap(body);
            long due = start;
            while (true) {
                long now = System.nanoTime();
                if (now - start >= durationNs) {
                    break;
                }
                if (intervalNs > 0) {
                    while ((now = System.nanoTime()) < due) {
                        LockSupport.parkNanos(due - now);
                    }
                }
                window.acquire();
                unconfirmed.add(channel.getNextPublishSeqNo());
                long sent = System.nanoTime();
                header.putLong(0, sent).putLong(8, intervalNs > 0 ? due : sent);
                channel.basicPublish("", QUEUE, true, MessageProperties.PERSISTENT_BASIC, body);
                published.incrementAndGet();
                due += intervalNs;
            }
            channel.waitForConfirms(10_000);
        } catch (Exception e) {
            throw new RuntimeException(e);
        }
    }

    static void settle(NavigableSet<Long> unconfirmed, Semaphore window, long tag, boolean multiple) {
        int settled = 0;
        if (multiple) {
            NavigableSet<Long> done = unconfirmed.headSet(tag, true);
            settled = done.size();
            done.clear();
        } else if (unconfirmed.remove(tag)) {
            settled = 1;
        }
        window.release(settled);
    }

    /** A consumer: latencies from the body's timestamps, a multiple ack every ACK_EVERY. */
    static final class Sink extends DefaultConsumer {
        long[] fromSent = new long[1 << 16];
        long[] fromIntended = new long[1 << 16];
        int count;
        long unacked;
        long lastTag;
        volatile long lastDelivery;

        Sink(Channel channel) {
            super(channel);
        }

        @Override
        public void handleDelivery(String consumerTag, Envelope envelope,
                AMQP.BasicProperties properties, byte[] body) throws IOException {
            long now = System.nanoTime();
            ByteBuffer header = ByteBuffer.wrap(body);
            if (count == fromSent.length) {
                fromSent = Arrays.copyOf(fromSent, count * 2);
                fromIntended = Arrays.copyOf(fromIntended, count * 2);
            }
            fromSent[count] = now - header.getLong(0);
            fromIntended[count] = now - header.getLong(8);
            count++;
            lastDelivery = now;
            delivered.incrementAndGet();
            lastTag = envelope.getDeliveryTag();
            if (++unacked >= ACK_EVERY) {
                getChannel().basicAck(lastTag, true);
                unacked = 0;
            }
        }

        void finish() throws IOException {
            if (unacked > 0) {
                getChannel().basicAck(lastTag, true);
            }
        }
    }

    static long lastDelivery(List<Sink> sinks) {
        return sinks.stream().mapToLong(s -> s.lastDelivery).max().orElse(0);
    }

    static long[] merge(List<Sink> sinks, boolean fromSent) {
        return sinks.stream()
                .flatMapToLong(s -> Arrays.stream(fromSent ? s.fromSent : s.fromIntended, 0, s.count))
                .sorted()
                .toArray();
    }

    static double percentile(long[] sorted, double q) {
        if (sorted.length == 0) {
            return 0;
        }
        return sorted[Math.min(sorted.length - 1, (int) Math.ceil(q * sorted.length) - 1)];
    }
}
