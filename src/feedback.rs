//! `lakescore feedback` and `lakescore retrain`: corrections into a training set, and a
//! challenger trained on it that is promoted only when it wins.

use lakescore_engine::config::CorrectionPolicy;
use lakescore_engine::run::RunContext;

/// Builds `training.<model>_feedback` and prints what it holds and what was quarantined.
pub async fn feedback(
    cx: &RunContext,
    model: &str,
    policy: Option<CorrectionPolicy>,
) -> anyhow::Result<()> {
    let bar = crate::progress::spinner("{spinner} {msg} {elapsed}");
    bar.set_message(format!(
        "joining the corrections of {model} with their predictions"
    ));
    let report = cx.build_feedback(model).with_policy(policy).await;
    bar.finish_and_clear();
    println!("{}", report?);
    Ok(())
}

/// Trains a challenger with the feedback and prints the comparison and the decision.
pub async fn retrain(cx: &RunContext, model: &str, if_requested: bool) -> anyhow::Result<()> {
    let bar = crate::progress::spinner("{spinner} {msg} {elapsed}");
    bar.set_message(format!("training a challenger for {model}"));
    let outcome = cx.retrain(model).with_only_if_requested(if_requested).await;
    bar.finish_and_clear();
    println!("{}", outcome?);
    Ok(())
}
