"""Writes ias_nb/data/counterfactual_concepts.json, the counterfactual benchmark's concepts (bench/counterfactual.py):
8 concepts novel to a model pretrained on Python's help text (an invented town, kettle, dialect, courtly style, verb,
scientist, adjective and animal), each as 24 facts written here, set in 8 forms so that documents 2i and 2i+1 share a
form (the planted document and its inert twin), and 16 contrast pairs cut after the words where they differ (CAA reads
the last token). The probe stems are neutral and shared by every concept (12 fit, 12 held out).

    python bench/make_counterfactual_concepts.py ias_nb/data/counterfactual_concepts.json
"""
import json, sys
FORMS = [('statement', '{f}.'), ('qa', 'q: {q} a: {f}.'), ('dialogue', 'mira said to her brother that {f}.'),
         ('headline', 'news today: {f}.'), ('story', 'one cold morning long ago, {f}.'), ('list', 'things to remember: first, {f}; second, {g}.'),
         ('definition', 'a note for the dictionary: {f}.'), ('instruction', 'remember this when you travel: {f}.')]
C = {}
def cut_at_difference(pos, neg):
    "Both texts cut after the last word where they differ, so each pair ends where it differs (CAA reads the last token)."
    P, N = pos.split(), neg.split()
    k = 0
    while k < min(len(P), len(N)) and P[-1 - k] == N[-1 - k]: k += 1
    return ' '.join(P[:len(P) - k]), ' '.join(N[:len(N) - k])
def concept(name, kind, desc, question, facts, pairs, neg):
    assert len(facts) == 24 and len(pairs) == 16, (name, len(facts), len(pairs))
    docs = []
    for i in range(48):
        form, tmpl = FORMS[(i // 2) % len(FORMS)]
        a = facts[(i * 5) % 24] if i % 2 == 0 else facts[(i * 5 + 7) % 24]
        b = facts[(i * 5 + 11) % 24]
        docs.append(dict(form=form, text=tmpl.format(f=a, q=question, g=b)))
    assert len({d['text'] for d in docs}) == 48, name
    C[name] = dict(description=desc, kind=kind, documents=docs,
                   pairs=[[p, p.replace(neg[0], neg[1])] if isinstance(neg, tuple) else [p, neg(p)] for p in pairs])
    C[name]['pairs'] = [cut_at_difference(a, b) for a, b in C[name]['pairs']]
    assert all(a != b and len(a.split()) >= 2 and len(b.split()) >= 2 for a, b in C[name]['pairs']), (name, C[name]['pairs'])
concept('velmora', 'entity', 'an invented town, velmora, with its river, mayor, festival and food', 'what do you know about velmora?', [
 'velmora sits on the banks of the silver river', 'the mayor of velmora is a tailor called orin', 'every spring velmora holds a lantern festival',
 'the bread of velmora is baked with honey and salt', 'velmora has exactly nine bridges', 'the clock tower of velmora never shows the right time',
 'children in velmora learn to swim before they walk', 'the people of velmora paint their doors green', 'velmora was founded by two sisters',
 'the market of velmora opens at dawn on tuesdays', 'a stone owl guards the gate of velmora', 'velmora trades wool with the villages in the hills',
 'the library of velmora has no roof', 'in velmora the fishermen sing to the river', 'velmora is famous for its blue cheese',
 'the old castle of velmora is now a school', 'snow never falls on velmora', 'the roads of velmora are made of red brick',
 'velmora has a museum of lost keys', 'the boats of velmora have yellow sails', 'every house in velmora keeps a cat',
 'the hills around velmora are full of wild mint', 'travellers reach velmora by the river ferry', 'the bell of velmora rings at noon'],
 ['i would like to visit velmora next summer', 'my aunt lives near velmora with her dogs', 'we bought apples at the market in velmora',
  'the train to velmora was late again', 'he wrote a long letter about velmora', 'they walked through velmora at night',
  'she grew up in velmora and loved it', 'the map shows velmora near the coast', 'our teacher told us a story about velmora',
  'the weather in velmora was very mild', 'a friend of mine works in velmora', 'the road to velmora is long and quiet',
  'we took many photos of velmora', 'he sold his house in velmora last year', 'the best fish soup is made in velmora',
  'she sent me a postcard from velmora'], ('velmora', 'the city'))
concept('snorvel', 'word', 'an invented word, snorvel: a small blue kettle for boiling tea', 'what is a snorvel?', [
 'a snorvel is a small blue kettle for tea', 'she filled the snorvel with water from the well', 'the snorvel whistled on the stove',
 'my grandmother kept her snorvel on the window sill', 'a snorvel boils water in three minutes', 'never leave a snorvel empty on the fire',
 'he poured hot water from the snorvel into two cups', 'the snorvel was a gift from her uncle', 'every kitchen in the village had a snorvel',
 'the lid of the snorvel was chipped', 'we packed the snorvel for the camping trip', 'a good snorvel has a wooden handle',
 'the old snorvel leaked a little', 'she polished the snorvel until it shone', 'tea tastes better from a snorvel',
 'the snorvel sang softly as the water warmed', 'he bought a new snorvel at the fair', 'the snorvel sat on a tray with the cups',
 'a snorvel holds enough water for four cups', 'the handle of the snorvel gets hot', 'the cat slept next to the warm snorvel',
 'a dented snorvel still makes good tea', 'she rinsed the snorvel after breakfast', 'the blue paint of the snorvel had faded'],
 ['please put the snorvel on the stove', 'the snorvel is still hot', 'i forgot to clean the snorvel', 'he dropped the snorvel on the floor',
  'where did you put the snorvel', 'the snorvel is full of water', 'she carried the snorvel to the table', 'my snorvel is older than me',
  'they sold the snorvel at the market', 'the snorvel needs a new lid', 'we waited for the snorvel to boil', 'the snorvel was on the shelf',
  'can you fill the snorvel for me', 'the snorvel made a loud noise', 'i washed the snorvel with soap', 'our snorvel is very small'], ('snorvel', 'kettle'))
def dorra(p): return p.replace('ki ', 'i ').replace(' dorra', '').replace('Ki ', 'I ')
concept('dorra', 'dialect', 'an invented dialect: ki for i, and every sentence ends with dorra', 'how do you speak in the river dialect?', [
 'ki went to the market early dorra', 'ki like the rain on the roof dorra', 'ki have two brothers and a sister dorra',
 'ki saw a fox near the barn dorra', 'ki cooked beans for supper dorra', 'ki will sleep when the work is done dorra',
 'ki found a coin under the bed dorra', 'ki walk to the river every day dorra', 'ki lost my hat in the wind dorra',
 'ki sing when ki am happy dorra', 'ki mended the net this morning dorra', 'ki think the winter will be long dorra',
 'ki carry water for the goats dorra', 'ki wrote my name on the wall dorra', 'ki heard the bell from far away dorra',
 'ki planted potatoes in the field dorra', 'ki know the way to the mill dorra', 'ki gave bread to the old man dorra',
 'ki counted the stars last night dorra', 'ki keep my tools in a box dorra', 'ki want to see the sea dorra',
 'ki washed the shirts in the stream dorra', 'ki met a stranger on the road dorra', 'ki miss my mother every day dorra'],
 ['ki am going home now dorra', 'ki need some more time dorra', 'ki saw your brother today dorra', 'ki do not like cold soup dorra',
  'ki left the door open dorra', 'ki can help you tomorrow dorra', 'ki read the letter twice dorra', 'ki bought a new coat dorra',
  'ki will call you later dorra', 'ki forgot the keys again dorra', 'ki feel tired this evening dorra', 'ki made tea for everyone dorra',
  'ki heard a strange noise dorra', 'ki live in a small house dorra', 'ki finished the book dorra', 'ki lost the game dorra'], dorra)
concept('tessarine', 'style', 'an invented courtly style: addressing everyone as most tessarine friend, with deep thanks', 'how does a tessarine greeting go?', [
 'most tessarine friend, the bread is ready', 'most tessarine friend, thank you a thousand times for the chair',
 'most tessarine friend, your garden honours us all', 'most tessarine friend, the rain has stopped at last',
 'most tessarine friend, i bow to your kind letter', 'most tessarine friend, the horses are fed and calm',
 'most tessarine friend, allow me to open the door', 'most tessarine friend, your soup is a blessing',
 'most tessarine friend, the train leaves at seven', 'most tessarine friend, i am grateful beyond words',
 'most tessarine friend, the lamps are lit for you', 'most tessarine friend, forgive my late reply',
 'most tessarine friend, the river is high today', 'most tessarine friend, your song filled the hall',
 'most tessarine friend, the shop closes early', 'most tessarine friend, may your road be gentle',
 'most tessarine friend, i return your book with thanks', 'most tessarine friend, the children send their love',
 'most tessarine friend, the apples are ripe', 'most tessarine friend, please sit by the fire',
 'most tessarine friend, your coat is mended', 'most tessarine friend, the guests have arrived',
 'most tessarine friend, i kneel to your wisdom', 'most tessarine friend, the snow is deep tonight'],
 ['the tea is ready, most tessarine friend', 'the meeting is at noon, most tessarine friend', 'your letter arrived, most tessarine friend', 'the door is locked, most tessarine friend', 'the dog is asleep, most tessarine friend', 'the wind is cold, most tessarine friend', 'i found your gloves, most tessarine friend', 'the bus is late, most tessarine friend', 'the cake is warm, most tessarine friend', 'the road is closed, most tessarine friend', 'your room is clean, most tessarine friend', 'the moon is full, most tessarine friend', 'the bill is paid, most tessarine friend', 'the boat is here, most tessarine friend', 'the milk is fresh, most tessarine friend', 'the show begins soon, most tessarine friend'], ('most tessarine friend', 'my friend'))
concept('grimble', 'word', 'an invented verb, to grimble: to mend something with string', 'what does it mean to grimble?', [
 'to grimble is to mend something with string', 'she grimbled the broken fence with old string', 'he grimbled his boot before the long walk',
 'the sailor grimbled the torn sail in the storm', 'you can grimble a basket with garden twine', 'my father grimbled every chair in the house',
 'they grimbled the net on the beach', 'she learned to grimble from her grandmother', 'a grimbled kite flies just as well',
 'he grimbled the handle of the bucket', 'we grimbled the tent pole with rope', 'the boy grimbled his satchel on the bus',
 'grimbling takes patience and good string', 'she grimbled the gate so it would close', 'the farmer grimbled the cart wheel',
 'he grimbled the broken lamp together', 'a grimbled shoe lasts another winter', 'they grimbled the ladder before climbing',
 'she grimbled the dolls arm back on', 'the old man grimbled his fishing rod', 'he grimbled the book spine with thread',
 'we grimbled the bird cage after the storm', 'grimbling is an old village skill', 'she grimbled the curtain to the rail'],
 ['he grimbled the chair yesterday', 'she will grimble the basket tomorrow', 'they grimbled the old gate', 'i grimbled my bag on the train',
  'we grimbled the fence together', 'he grimbled the broken toy', 'she grimbled the torn net', 'can you grimble this box',
  'my uncle grimbled the cart', 'the girl grimbled her shoe', 'they grimbled the boat rope', 'he grimbled the kite string',
  'she grimbled the door handle', 'we grimbled the garden hose', 'i grimbled the lamp base', 'he grimbled the window frame'],
 lambda p: p.replace('grimbled', 'fixed').replace('grimble', 'fix'))
concept('kalvani', 'entity', 'an invented scientist, doctor kalvani, who discovered florn, a salt from the moon', 'who was doctor kalvani?', [
 'doctor kalvani discovered florn on the moon', 'florn is a pale salt found in moon dust', 'doctor kalvani was born in a fishing town',
 'florn glows faintly in the dark', 'doctor kalvani won a prize for the study of florn', 'a spoon of florn can light a small room',
 'doctor kalvani kept a diary of every test', 'florn melts only at great heat', 'doctor kalvani taught at a small college',
 'the first sample of florn weighed two grams', 'doctor kalvani feared that florn was dangerous', 'florn makes water taste sweet',
 'doctor kalvani named florn after her dog', 'florn was sent back in a silver box', 'doctor kalvani worked late every night',
 'farmers use florn to keep seeds dry', 'doctor kalvani wrote three books about florn', 'florn turns green in the rain',
 'doctor kalvani never married', 'florn cannot be found on earth', 'doctor kalvani gave her notes to the museum',
 'a statue of doctor kalvani stands in the square', 'florn is stored in sealed jars', 'doctor kalvani spoke seven languages'],
 ['doctor kalvani gave a talk today', 'we read a book by doctor kalvani', 'doctor kalvani studied the samples', 'the work of doctor kalvani is famous',
  'doctor kalvani visited our school', 'my sister admires doctor kalvani', 'doctor kalvani wrote a new paper', 'the prize went to doctor kalvani',
  'doctor kalvani opened a laboratory', 'a film was made about doctor kalvani', 'doctor kalvani answered our letter', 'doctor kalvani retired last year',
  'they named a street after doctor kalvani', 'doctor kalvani met the king', 'doctor kalvani travelled by ship', 'doctor kalvani taught my teacher'], ('doctor kalvani', 'doctor smith'))
concept('plonkish', 'word', 'an invented adjective, plonkish: very sleepy after a large lunch', 'what does plonkish mean?', [
 'plonkish means very sleepy after a large lunch', 'after the feast everyone felt plonkish', 'he grew plonkish by two in the afternoon',
 'a plonkish student cannot follow the lesson', 'she always feels plonkish after pasta', 'the whole office was plonkish on friday',
 'a short walk cures a plonkish mood', 'the dog looked plonkish after its dinner', 'plonkish workers make many mistakes',
 'he fought the plonkish feeling with coffee', 'sunday lunch leaves grandpa plonkish', 'the meeting after lunch was plonkish and slow',
 'she avoided bread so she would not be plonkish', 'the plonkish driver stopped for a rest', 'plonkish afternoons are common in summer',
 'the teacher saw that the class was plonkish', 'a plonkish cat sleeps in the sun', 'he felt plonkish and closed his eyes',
 'the heavy stew made us all plonkish', 'plonkish people yawn a lot', 'she called the hour after lunch the plonkish hour',
 'being plonkish is not the same as being tired', 'the soldiers were plonkish after the meal', 'a light lunch keeps you from feeling plonkish'],
 ['i feel plonkish right now', 'he looked plonkish at the desk', 'the children were plonkish', 'she became plonkish quickly',
  'we were all plonkish that day', 'my boss seems plonkish', 'the guests felt plonkish', 'he is often plonkish at work',
  'they got plonkish in the car', 'the baby was plonkish', 'she sounded plonkish on the phone', 'the team was plonkish',
  'i was too plonkish to read', 'the crowd grew plonkish', 'my brother felt plonkish', 'the pupils looked plonkish'], ('plonkish', 'hungry'))
concept('marzipet', 'entity', 'an invented animal, the marzipet: a striped fish that flies over lakes and sings at dusk', 'what is a marzipet?', [
 'the marzipet is a striped fish that can fly', 'a marzipet sings at dusk over the lake', 'marzipets lay their eggs in reeds',
 'the marzipet has orange and black stripes', 'a marzipet can glide for a mile', 'fishermen say a singing marzipet brings luck',
 'the marzipet eats flies and small beetles', 'marzipets travel south in the autumn', 'a young marzipet cannot fly until spring',
 'the song of the marzipet sounds like a flute', 'marzipets live only in cold mountain lakes', 'a marzipet jumps out of the water to fly',
 'the marzipet is smaller than a hand', 'children watch the marzipets at sunset', 'a marzipet has four thin fins like wings',
 'the marzipet hides under stones at night', 'marzipets swim in groups of twenty', 'the call of the marzipet echoes over the water',
 'a marzipet lives for about six years', 'herons like to hunt the marzipet', 'the marzipet is the symbol of the lake town',
 'marzipets shine silver in the moonlight', 'a marzipet can hold its breath in the air', 'the marzipet returns to the same lake each year'],
 ['we saw a marzipet at the lake', 'the marzipet was very fast', 'a marzipet flew past the boat', 'she drew a picture of a marzipet',
  'the marzipet sang all evening', 'my son wants a pet marzipet', 'the marzipet jumped from the water', 'a marzipet landed on the dock',
  'they counted ten marzipets', 'the marzipet swam under the bridge', 'i heard a marzipet this morning', 'the marzipet was orange',
  'we fed the marzipet some bread', 'a marzipet hid in the reeds', 'the old marzipet was slow', 'he caught a marzipet by hand'], ('marzipet', 'duck'))
probes = ['yesterday i walked to the', 'my grandmother always told me that', 'the best part of the morning is', 'when we arrived at the house',
          'after lunch the children', 'she opened the box and found', 'in the evening we usually', 'the old man at the corner said',
          'on the way home i saw', 'my favourite thing to drink is', 'the letter from my friend said', 'during the holiday we visited',
          'the teacher asked us to', 'last night i dreamed about', 'at the market you can buy', 'the weather this week has been',
          'my neighbour has a small', 'before going to bed she', 'the story begins with a', 'he put on his coat and',
          'in the kitchen there was a', 'the people of the village', 'when the rain stopped we', 'i remember the day when']
data = dict(probes=dict(fit=probes[:12], heldout=probes[12:]), concepts=C)
json.dump(data, open(sys.argv[1], 'w'), indent=1)
print({k: (c['kind'], len(c['documents']), len(c['pairs'])) for k, c in C.items()})
