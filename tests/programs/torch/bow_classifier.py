# After pytorch/tutorials beginner_source/nlp/deep_learning_tutorial.py ("Deep Learning with PyTorch", the
# bag-of-words classifier): word counts in a zero vector filled by indexing, a Linear layer with
# log_softmax, NLLLoss, SGD for 100 epochs, log-probabilities before and after, the weight column of one
# word. Stand-in: sentences of our own in Spanish and English. Only the import differs.
import clnet as torch
import clnet.nn as nn
import clnet.nn.functional as F
import clnet.optim as optim

torch.manual_seed(1)

data = [("yo bebo agua fria por la tarde".split(), "SPANISH"),
        ("the bird sings in the tree".split(), "ENGLISH"),
        ("nosotros comemos pan en la mesa".split(), "SPANISH"),
        ("it is a good day for a walk".split(), "ENGLISH")]

test_data = [("ella bebe agua en la casa".split(), "SPANISH"),
             ("the day is good for the bird".split(), "ENGLISH")]

# each word gets a column of the bag-of-words vector
word_to_ix = {}
for sent, _ in data + test_data:
    for word in sent:
        if word not in word_to_ix:
            word_to_ix[word] = len(word_to_ix)
print(word_to_ix)

VOCAB_SIZE = len(word_to_ix)
NUM_LABELS = 2


class BoWClassifier(nn.Module):

    def __init__(self, num_labels, vocab_size):
        super(BoWClassifier, self).__init__()
        self.linear = nn.Linear(vocab_size, num_labels)

    def forward(self, bow_vec):
        return F.log_softmax(self.linear(bow_vec), dim=1)


def make_bow_vector(sentence, word_to_ix):
    vec = torch.zeros(len(word_to_ix))
    for word in sentence:
        vec[word_to_ix[word]] += 1
    return vec.view(1, -1)


def make_target(label, label_to_ix):
    return torch.LongTensor([label_to_ix[label]])


model = BoWClassifier(NUM_LABELS, VOCAB_SIZE)

for param in model.parameters():
    print(param)

with torch.no_grad():
    sample = data[0]
    bow_vector = make_bow_vector(sample[0], word_to_ix)
    log_probs = model(bow_vector)
    print(log_probs)

label_to_ix = {"SPANISH": 0, "ENGLISH": 1}

with torch.no_grad():
    for instance, label in test_data:
        bow_vec = make_bow_vector(instance, word_to_ix)
        log_probs = model(bow_vec)
        print(log_probs)

print(next(model.parameters())[:, word_to_ix["agua"]])

loss_function = nn.NLLLoss()
optimizer = optim.SGD(model.parameters(), lr=0.1)

for epoch in range(100):
    for instance, label in data:
        model.zero_grad()

        bow_vec = make_bow_vector(instance, word_to_ix)
        target = make_target(label, label_to_ix)

        log_probs = model(bow_vec)

        loss = loss_function(log_probs, target)
        loss.backward()
        optimizer.step()

correct = 0
with torch.no_grad():
    for instance, label in test_data:
        bow_vec = make_bow_vector(instance, word_to_ix)
        log_probs = model(bow_vec)
        print(log_probs)
        correct += int(log_probs.argmax(1).item() == label_to_ix[label])

print(next(model.parameters())[:, word_to_ix["agua"]])
print('test sentences classified right:', correct)
