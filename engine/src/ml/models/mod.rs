//! Machine-learning models: the process's bounded cache of loaded models ([`cache`]),
//! reading a model's rows ([`dataset`]), preprocessing
//! ([`features`]), training ([`learner`]: lakescore's own [`logistic`] regression and
//! histogram [`trees`], smartcore for linear and ridge regression), lakescore's compiled
//! view of a trained model ([`compiled`]) and its trees laid out for scoring blocks of rows ([`tree_walk`]), explanations ([`explain`]), the `predict` SQL function
//! ([`predict`]) and how it travels to a cluster ([`predict_codec`]) and the models a session's `predict` calls use ([`loaded`]), holdout
//! metrics ([`metrics`]), work spread over the cores in a fixed order ([`parallel`]), the training-time profile ([`profile`]), the versioned registry
//! ([`registry`]), `train` ([`train`]), `retrain` ([`retrain`]) and `score` ([`score`]).

pub mod cache;
pub mod compiled;
pub mod dataset;
pub mod explain;
pub mod features;
pub mod learner;
pub mod loaded;
pub mod logistic;
pub mod metrics;
pub mod online;
pub mod parallel;
pub mod predict;
pub mod predict_codec;
pub mod prediction_id;
pub mod profile;
pub mod registry;
pub mod retrain;
pub mod score;
pub mod train;
pub mod tree_walk;
pub mod trees;
