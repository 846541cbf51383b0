//! placewise: recommends where each service should run across cloud regions, and with how
//! many replicas, from telemetry, a latency model and a mixed-integer program.
//!
//! The modules follow the pipeline: [`catalog`] (regions, RTT, prices), [`generate`] (the
//! synthetic fleet and its telemetry), [`simulate`] (the world model that is the ground
//! truth), [`store`] (SQLite), [`features`] (the training matrix) and
//! [`latency_model`] (gradient-boosted trees). The binary's commands live in [`commands`].

pub mod catalog;
pub mod check;
pub mod cli;
pub mod commands;
pub mod dashboard;
pub mod experiment;
pub mod features;
pub mod generate;
pub mod interrupt;
pub mod latency_model;
mod lightgbm_log;
pub mod optimize;
pub mod output;
pub mod plan_file;
pub mod simulate;
pub mod stats;
pub mod store;
pub mod strategy;
