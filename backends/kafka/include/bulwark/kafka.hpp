#pragma once
// bulwark::kafka: Kafka adapters on librdkafka (see docs/kafka.md).
#include <bulwark/kafka/admin.hpp>
#include <bulwark/kafka/config.hpp>
#include <bulwark/kafka/consumer.hpp>
#include <bulwark/kafka/error.hpp>
#include <bulwark/kafka/event_bus.hpp>
#include <bulwark/kafka/producer.hpp>
