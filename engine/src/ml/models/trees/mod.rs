//! lakescore's tree learners, used by `decision_tree`, `random_forest` and
//! `gradient_boosting`: encoded columns binned once per training run ([`bins`]), one
//! histogram tree grower for every tree model ([`grow`], building on [`histogram`] and
//! [`split`]), soft-voting forests and single
//! trees ([`forest`]), gradient boosting ([`boosting`]) and their seeded random numbers
//! ([`rng`]).

pub mod bins;
pub mod boosting;
pub mod forest;
pub mod grow;
mod histogram;
pub mod rng;
mod split;
