//! The consuming side of a RabbitMQ connection: a consumer's deliveries,
//! with what InferQ reads from each message's properties (how often it was
//! delivered before, its trace context), and the acker that settles one.

use async_trait::async_trait;
use bytes::Bytes;
use futures::StreamExt;
use lapin::options::{BasicAckOptions, BasicCancelOptions, BasicNackOptions};
use lapin::types::AMQPValue;
use lapin::{BasicProperties, Channel};

use crate::broker::{Acker, BrokerError, Deliveries, Delivery};

pub(super) struct AmqpDeliveries {
    channel: Channel,
    consumer: lapin::Consumer,
    tag: String,
    done: bool,
}

impl AmqpDeliveries {
    pub(super) fn new(channel: Channel, consumer: lapin::Consumer, tag: String) -> Self {
        AmqpDeliveries {
            channel,
            consumer,
            tag,
            done: false,
        }
    }
}

#[async_trait]
impl Deliveries for AmqpDeliveries {
    async fn next(&mut self) -> Option<Result<Delivery, BrokerError>> {
        if self.done {
            return None;
        }
        match self.consumer.next().await {
            Some(Ok(d)) => Some(Ok(Delivery {
                delivery_count: delivery_count(&d.properties),
                traceparent: traceparent(&d.properties),
                payload: Bytes::from(d.data),
                redelivered: d.redelivered,
                acker: Box::new(AmqpAcker(d.acker)),
            })),
            Some(Err(e)) => {
                self.done = true;
                Some(Err(BrokerError::Unavailable(e.to_string())))
            }
            None => {
                self.done = true;
                None
            }
        }
    }

    async fn cancel(&mut self) {
        if self.channel.status().connected() {
            let _ = self
                .channel
                .basic_cancel(self.tag.as_str().into(), BasicCancelOptions::default())
                .await;
        }
        self.done = true;
    }
}

struct AmqpAcker(lapin::Acker);

#[async_trait]
impl Acker for AmqpAcker {
    async fn ack(&self) -> Result<(), BrokerError> {
        self.0
            .ack(BasicAckOptions::default())
            .await
            .map(|_| ())
            .map_err(|e| BrokerError::Unavailable(e.to_string()))
    }

    async fn requeue(&self) -> Result<(), BrokerError> {
        self.0
            .nack(BasicNackOptions {
                multiple: false,
                requeue: true,
            })
            .await
            .map(|_| ())
            .map_err(|e| BrokerError::Unavailable(e.to_string()))
    }

    async fn reject(&self) -> Result<(), BrokerError> {
        self.0
            .nack(BasicNackOptions {
                multiple: false,
                requeue: false,
            })
            .await
            .map(|_| ())
            .map_err(|e| BrokerError::Unavailable(e.to_string()))
    }
}

/// How often a delivered message went back to its quorum queue before.
fn delivery_count(props: &BasicProperties) -> u32 {
    let Some(headers) = props.headers() else {
        return 0;
    };
    let Some(v) = headers.inner().get("x-delivery-count") else {
        return 0;
    };
    let n = match v {
        AMQPValue::LongLongInt(n) => *n,
        AMQPValue::LongInt(n) => i64::from(*n),
        AMQPValue::LongUInt(n) => i64::from(*n),
        AMQPValue::ShortInt(n) => i64::from(*n),
        AMQPValue::ShortUInt(n) => i64::from(*n),
        _ => 0,
    };
    n.clamp(0, i64::from(u32::MAX)) as u32
}

/// The `traceparent` application header, when it is a valid one.
fn traceparent(props: &BasicProperties) -> Option<inferq_core::trace::TraceContext> {
    match props
        .headers()
        .as_ref()?
        .inner()
        .get(inferq_core::trace::TRACEPARENT)?
    {
        AMQPValue::LongString(s) => inferq_core::trace::TraceContext::parse(&s.to_string()),
        _ => None,
    }
}
