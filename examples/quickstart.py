"""The spec's Basic Ensemble Training example, run for real, then scored on held-out data.

    python examples/quickstart.py

Mixed precision is on (the spec's default): the amp plugin picks bf16 only where the hardware gains
from it, else fp32, and says which in each learner's notes. Denoising is off here to keep the demo
quick: on this synthetic task its effect on the ensemble is small and it doubles the step time
(docs/benchmarks.md); `enable_denoising=True` turns on the default objectives.
"""

from modalbag import MultiModalEnsembleModel, create_synthetic_model  # noqa: F401 - the spec's import

# Create model with data and ensemble bags
model = create_synthetic_model({
    'text_embeddings': (768, 'text'),
    'image_features': (2048, 'image'),
    'user_metadata': (50, 'tabular')
}, n_samples=1000, n_classes=5)

# Generate ensemble and select learners
model.create_ensemble(n_bags=20, dropout_strategy='adaptive')
bags = model.generate_bags()
learners = model.select_base_learners(
    task_type='classification',
    num_classes=5,
    optimization_strategy='balanced',
    instantiate=True
)

# Train the ensemble
trained_learners = model.train_ensemble(
    task_type='classification',
    num_classes=5,
    epochs=50,
    enable_denoising=False,
    denoising_weight=0.1
)

print(f"✅ Trained {len(trained_learners)} learners successfully!")

# Get training summary
training_summary = model.get_training_summary()
print(f"Average accuracy: {training_summary['average_performance']['accuracy']:.3f}")
print(f"Total training time: {sum(training_summary['training_times'].values()):.1f}s")

# Held-out samples of the same task: all modalities, then with image features missing everywhere
data, labels = model.synthetic_task.sample(2000, random_state=1)
full = model.evaluate(data, labels)
no_image = model.evaluate({k: v for k, v in data.items() if k != 'image_features'}, labels)
print(f"Held-out ensemble accuracy: {full['accuracy']:.3f} (chance 0.200); "
      f"without image_features: {no_image['accuracy']:.3f}")
